"""A silo's ClientApps, run one after another in ONE long-lived process.

With its default ``--isolation subprocess`` a Flower 1.42 SuperNode starts Flower's
SuperExec, which starts a NEW ``flwr-clientapp`` process for every message: Python, flwr,
JAX and our modules are imported again (about 1.5 s, and 4 silos do it at once on 2
cores), every XLA compilation is loaded again, and nothing stays warm between rounds.

Started next to a SuperNode that runs with ``--isolation process`` (Flower's mode for an
externally managed SuperExec), this module IS that SuperExec: Flower's own loop
(``run_superexec``: AcquireTask on the SuperNode's Runtime API, its plugin and signal
handling) with an executor that runs each ClientApp task in this process instead of
spawning one. A task goes through the same Runtime API steps as Flower's
``flwr-clientapp``: pull the message, context, run and app bundle; load the ClientApp;
call it; push the reply and the task status. Imports, jitted functions and the loaded
ClientApp stay warm from one round to the next. Tasks run one at a time, which is also
what a silo wants (one training job on its data at a time).

Flower's task-side HTTP handling assumes a disposable process per task: a refused task
token SIGINTs the process, a stopped run raises a ``BaseException``. Here the task's
calls use their own retry policy and heartbeat, so a task the SuperNode withdraws (its
run stopped while the message was still arriving) ends that task only.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.cli.install import install_from_fab
from flwr.clientapp.client_app import ClientApp, LoadClientAppError
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node
from flwr.proto.runtime_pb2 import (
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.fab import Fab
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import (
    RuntimeTokenHttpInterceptor,
    RuntimeVersionHttpInterceptor,
)
from flwr.supercore.retry.retry_invoker import RetryInvoker, exponential
from flwr.supercore.run import Run, RunNotRunningException
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.superexec import run_superexec as flower_superexec
from flwr.supercore.superexec.executor import ExecutionSpec, LaunchResult
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

from app.ops import metrics

__all__ = ["InProcessExecutor", "main", "pull_task_input", "run_task"]

logger = logging.getLogger("fedstream.fl.runtime")


@dataclass
class _AppCache:
    """ClientApps already installed and loaded, by app-bundle hash."""

    apps: dict[str, ClientApp] = field(default_factory=dict)

    def get(self, fab_id: str, fab_version: str, fab_hash: str, content: bytes) -> ClientApp:
        app = self.apps.get(fab_hash)
        if app is None:
            install_from_fab(content, skip_prompt=True)
            load = get_load_client_app_fn(default_app_ref="", app_path=None, multi_app=True)
            app = self.apps[fab_hash] = load(fab_id, fab_version, fab_hash)
        return app


# The SuperNode hands out a task while it may still be fetching the message's objects
# from the SuperLink; Flower's pull then backs off 1 s, 2 s, ... per missing object.
_PULL_BACKOFF_S = 0.02
_PULL_BACKOFF_CAP_S = 0.5


def pull_task_input(client: RuntimeHttpClient) -> tuple[Message, Context, Run, Fab]:
    """Flower's ``run_clientapp.pull_task_input`` with a short retry for missing objects."""
    res = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = res.task_id
    TaskIdentity.run_id = res.run.run_id
    TaskIdentity.node_id = res.context.node_id
    context = context_from_proto(res.context)
    messages = client.PullMessages(PullAppMessagesRequest())
    if not messages.messages_list:
        raise RuntimeError("the SuperNode's Runtime API returned no message")
    node = Node(node_id=context.node_id)
    tree = messages.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree,
        make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(
            client.ConfirmMessageReceived, node, context.run_id
        ),
        return_type=Message,
        initial_backoff=_PULL_BACKOFF_S,
        backoff_cap=_PULL_BACKOFF_CAP_S,
    )
    message.metadata.__dict__["_message_id"] = tree.object_id  # as Flower does: not inflated
    return message, context, run_from_proto(res.run), fab_from_proto(res.fab)


# Runtime API status codes worth retrying; any other error status ends the task.
_RETRY_STATUS = frozenset({502, 503, 504})
_CALL_RETRY_S = 60.0
# The SuperNode withdrew the task: its token is no longer valid (401) or its run stopped
# (403). Happens when a run stops while the SuperNode still receives one of its messages.
_WITHDRAWN_STATUS = frozenset({401, 403})


def _task_retry_invoker() -> RetryInvoker:
    """Retries of one task's Runtime API calls that end the task, never this process.

    Flower's own invoker is made for one process per task: on 401 it SIGINTs its own
    process, and it turns 403 into ``RunNotRunningException``, a ``BaseException``.
    """
    return RetryInvoker(
        wait_gen_factory=lambda: exponential(base_delay=0.05, max_delay=2),
        recoverable_exceptions=(httpx.TransportError, httpx.HTTPStatusError),
        max_tries=None,
        max_time=_CALL_RETRY_S,
        should_giveup=lambda exc: (
            isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code not in _RETRY_STATUS
        ),
    )


def _is_withdrawn(exc: BaseException) -> bool:
    if isinstance(exc, RunNotRunningException):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in _WITHDRAWN_STATUS


def _heartbeat_fn(client: RuntimeHttpClient, withdrawn: threading.Event) -> Callable[[], bool]:
    """Flower's task heartbeat, except that a rejected one marks the task withdrawn
    (Flower's raises SIGINT in the process: right for a process per task, not here)."""
    request = SendTaskHeartbeatRequest()

    def beat() -> bool:
        if withdrawn.is_set():
            return True
        try:
            accepted = client.SendTaskHeartbeat(request).success
        except httpx.TransportError:
            return False  # retried by the HeartbeatSender
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in _RETRY_STATUS:
                return False
            accepted = False
        if not accepted:
            withdrawn.set()
        return True

    return beat


def run_task(address: str, token: str, cache: _AppCache | None = None) -> bool:
    """Run one ClientApp task in this process; True when it completed.

    Mirrors ``flwr.supernode.runtime.run_clientapp.run_clientapp`` without its process
    exit: an exception in the ClientApp becomes an error reply and a FAILED status, and
    this process goes on to the next task.
    """
    client = RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,
        root_certificates=None,
        interceptors=[
            RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
            RuntimeTokenHttpInterceptor(token),
        ],
        retry_invoker=_task_retry_invoker(),
    )
    withdrawn = threading.Event()
    heartbeat = HeartbeatSender(_heartbeat_fn(client, withdrawn))
    heartbeat.start()
    message = reply = context = None
    status, details = SubStatus.FAILED, "ClientApp task failed"
    t0 = time.perf_counter()
    t_app = t_push = t0
    try:
        message, context, run, fab = pull_task_input(client)
        app = (cache or _AppCache()).get(run.fab_id, run.fab_version, fab.hash_str, fab.content)
        t_app = time.perf_counter()
        reply = app(message=message, context=context)
        status, details = SubStatus.COMPLETED, ""
    except (Exception, RunNotRunningException) as exc:  # the silo serves the next rounds
        if _is_withdrawn(exc) or withdrawn.is_set():
            withdrawn.set()
            logger.warning("task withdrawn by the SuperNode (its run stopped): %r", exc)
        else:
            code = (
                ErrorCode.LOAD_CLIENT_APP_EXCEPTION
                if isinstance(exc, LoadClientAppError)
                else ErrorCode.CLIENT_APP_RAISED_EXCEPTION
            )
            details = f"{type(exc)}:<'{exc}'>"
            logger.exception("ClientApp task failed")
            if message is not None:
                reply = Message(Error(code=code, reason=details), reply_to=message)
    finally:
        t_push = time.perf_counter()
        if not withdrawn.is_set():  # a withdrawn task has nobody to report to
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except (Exception, RunNotRunningException):
                logger.exception("could not push the reply to the SuperNode")
                status = SubStatus.FAILED
            push_task_output(client, context, status, details)
        heartbeat.stop()
        client.close()
    metrics.RUNTIME_TASKS.labels(status=str(status)).inc()
    metrics.RUNTIME_TASK_SECONDS.observe(time.perf_counter() - t0)
    logger.info(
        "task %s in %.2f s (pull %.2f s, ClientApp %.2f s, push %.2f s)",
        status,
        time.perf_counter() - t0,
        t_app - t0,
        t_push - t_app,
        time.perf_counter() - t_push,
    )
    return status == SubStatus.COMPLETED


class InProcessExecutor:
    """Flower SuperExec executor (its ``Executor`` protocol) that runs ClientApps here."""

    def __init__(self) -> None:
        self._cache = _AppCache()

    def get_eligible_capacity(
        self,
        supported_task_types: set[TaskType],
        *,
        insecure: bool = False,
        root_certificates_path: str | None = None,
    ) -> tuple[set[TaskType], set[str]]:
        del insecure, root_certificates_path
        return supported_task_types & {TaskType.CLIENT_APP}, set()

    def wait_for_capacity(
        self,
        task_type: TaskType | None = None,
        *,
        fab_hash: str | None = None,
        insecure: bool = False,
        root_certificates_path: str | None = None,
    ) -> None:
        del task_type, fab_hash, insecure, root_certificates_path

    def launch(self, spec: ExecutionSpec) -> LaunchResult:
        if spec.task_type != TaskType.CLIENT_APP:
            return LaunchResult.failed(f"this runtime runs ClientApps only, not {spec.task_type}")
        # Synchronous: Flower's loop acquires the next task once this one is done.
        logger.info("task %d acquired", spec.task_id)
        try:
            run_task(spec.runtime_api_address, spec.token, self._cache)
        except (Exception, RunNotRunningException) as exc:  # e.g. SuperNode gone: keep serving
            logger.exception("task %d could not run", spec.task_id)
            return LaunchResult.failed(str(exc))
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Nothing to maintain: there is no pool."""

    def close(self) -> None:
        """Nothing to release."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app.fl.warm_runtime",
        description="Run a SuperNode's ClientApps in this one long-lived process "
        "(the SuperNode must run with --isolation process).",
    )
    parser.add_argument(
        "--runtime-api-address", required=True, help="the SuperNode's Runtime API, HOST:PORT"
    )
    parser.add_argument("--parent-pid", type=int, help="exit when this process (a SuperNode) exits")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus /metrics here (0 = off)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per task poll
    # `kill -USR1 <pid>` writes every thread's stack to the log: a hung task shows where.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    executor = InProcessExecutor()
    flower_superexec.get_executor = lambda *a, **k: executor  # type: ignore[attr-defined]
    logger.info("warm ClientApp runtime for %s", args.runtime_api_address)
    metrics.serve(args.metrics_port, f"runtime {args.runtime_api_address}")
    flower_superexec.run_superexec(
        runtime_api_address=args.runtime_api_address,
        insecure=True,
        parent_pid=args.parent_pid,
    )


if __name__ == "__main__":
    main()
