"""The SuperNode launcher's receive fix, on Flower's real NodeState and ObjectStore.

Only the SuperLink connection is replaced (``receive``/``pull_object``/...): a queued
message of a run that was stopped meanwhile. Flower's own ``_pull_and_store_message``
runs unchanged inside the wrapper.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Message, RecordDict
from flwr.common.constant import Status
from flwr.supercore.constant import TaskType
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects, get_object_tree
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run, RunNotRunningException
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode import start_client_internal
from flwr.supernode.nodestate import NodeStateFactory

from app.fl.supernode import receive_without_orphan_tasks

RUN_ID, NODE_ID = 42, 7


def _queued_message() -> tuple[Message, Any]:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 1
    message = Message(RecordDict(), dst_node_id=NODE_ID, message_type="train")
    message.metadata.__dict__["_message_id"] = message.object_id
    return message, get_object_tree(message)


def _receive_once(
    pull_and_store: Any, pull_object: Any, queued: tuple[Message, Any] | None = None
) -> tuple[Any, Any, Any]:
    queued = queued or _queued_message()
    store_factory = ObjectStoreFactory()
    state = NodeStateFactory(store_factory).state()
    state.set_node_id(NODE_ID)
    run = Run.create_empty(RUN_ID)
    run.primary_task_type = TaskType.CLIENT_APP
    state.store_run(run)
    store = state.object_store
    result = pull_and_store(
        state=state,
        object_store=store,
        node_config={},
        receive=lambda: queued,
        get_run=lambda run_id: run,
        get_fab=lambda fab_hash, run_id: None,
        pull_object=pull_object,
        confirm_message_received=lambda run_id, message_id: None,
        trusted_entities=None,
    )
    return result, state, store


def _run_stopped(run_id: int, object_id: str) -> bytes:
    raise RunNotRunningException


def _open_tasks(state: Any) -> list[Any]:
    return state.get_tasks(statuses=[Status.PENDING, Status.STARTING, Status.RUNNING])


def test_stock_flower_leaves_a_pending_task_when_the_run_stops_mid_receive() -> None:
    # The defect the wrapper exists for: if this starts failing, Flower fixed it itself.
    result, state, _ = _receive_once(start_client_internal._pull_and_store_message, _run_stopped)
    assert result is None
    assert len(_open_tasks(state)) == 1


def test_wrapped_receive_fails_the_task_and_deletes_the_message() -> None:
    wrapped = receive_without_orphan_tasks(start_client_internal._pull_and_store_message)
    result, state, store = _receive_once(wrapped, _run_stopped)
    assert result is None
    assert _open_tasks(state) == []
    (task,) = state.get_tasks()
    assert task.status.status == Status.FINISHED
    assert "stopped while the message was being received" in task.status.details
    assert state.get_messages_legacy() == []
    assert len(store) == 0


def test_wrapped_receive_keeps_a_normal_message() -> None:
    wrapped = receive_without_orphan_tasks(start_client_internal._pull_and_store_message)
    queued = _queued_message()
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(queued[0]).items()}
    result, state, _ = _receive_once(wrapped, lambda run_id, oid: contents[oid], queued)
    assert result == RUN_ID
    assert len(_open_tasks(state)) == 1
