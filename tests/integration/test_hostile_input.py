"""Hostile input against a running worker subprocess on the real broker (issue 9).

One worker process takes every case: over 60 distinct hostile records on the three input
topics (crash-loop timestamps, a 12.5 MiB value, null values and tombstones, outlier event
times, duplicated keys and txn_ids, and the usual malformed input), each followed by a
valid canary transaction on the same partition. At the end: the worker's PID never
changed, every canary reached ``features.enriched``, every case was processed or
dead-lettered as specified, and sent = processed + dead-lettered (0 lost).

The restart test puts poison at the worker's committed offset: the restarted worker must
be up and processing within seconds (before the fix it died 1.3 s after "ready", forever).
"""

from __future__ import annotations

import base64
import hashlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from app.features.partitioning import partition_for
from app.kafka.clients import delivery_errors, make_consumer, make_producer
from app.stream.harness import WorkerProcess, read_topic, wait_committed, worker_group
from tests.hostile_corpus import dumps
from tests.integration.stream_support import PARTITIONS, new_namespace
from topics import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    CUSTOMERS,
    FEATURES_ENRICHED,
    TRANSACTIONS,
    dlq,
    namespaced,
)

BIG = int(12.5 * 1024 * 1024)
TOPIC_OF = {"txn": TRANSACTIONS, "customer": CUSTOMERS, "chat": CHATBOT_REQUESTS}


@dataclass
class Case:
    """One hostile record and what must become of it."""

    name: str
    kind: str  # txn | customer | chat
    key: bytes | None
    value: bytes | None
    reason: str | None  # expected substring of the dead letter's reason; None = processed
    partition: int = 0
    offset: int = -1


class Sender:
    """Produce records to explicit partitions and learn their offsets."""

    def __init__(self, bootstrap: str, ns: str) -> None:
        self.producer = make_producer(bootstrap, **{"linger.ms": 5})
        self.ns = ns
        self.errors = delivery_errors()

    def send(self, kind: str, key: bytes | None, value: bytes | None, partition: int) -> Any:
        slot: dict[str, int] = {}

        def done(err: Any, msg: Any) -> None:
            self.errors(err, msg)
            if err is None:
                slot["offset"] = msg.offset()

        self.producer.produce(namespaced(TOPIC_OF[kind], self.ns), value=value, key=key,
                              partition=partition, on_delivery=done)  # fmt: skip
        self.producer.poll(0)
        return slot

    def flush(self) -> None:
        assert self.producer.flush(60) == 0 and not self.errors.failed, self.errors.first


def txn(cid: str, txn_id: str, ts: float, amount: float = 10.0, **extra: Any) -> dict[str, Any]:
    return {"txn_id": txn_id, "customer_id": cid, "ts": ts, "amount": amount, **extra}


def customer(cid: str, ts: float, silo: int = 1, **extra: Any) -> dict[str, Any]:
    return {"customer_id": cid, "silo": silo, "ts": ts, **extra}


def hostile_cases(now: float) -> list[Case]:
    """The cases (distinct names); the key is the record's customer id unless that is the case."""
    cases: list[Case] = []

    def t(name: str, reason: str | None, value: bytes | None, key: bytes | None = None) -> None:
        cases.append(Case(name, "txn", f"h-{name}".encode() if key is None else key, value, reason))

    def good_t(name: str, **fields: Any) -> dict[str, Any]:
        return {**txn(f"h-{name}", f"x-{name}", now - 120), **fields}

    def bad_t(name: str, reason: str, **fields: Any) -> None:
        t(name, reason, dumps(good_t(name, **fields)))

    ok = dumps(good_t("ok"))
    # 1. crash loop: integers beyond 64 bits and 1e300 as event time
    bad_t("ts 2**70", "not seconds since the epoch", ts=2**70)
    bad_t("ts 1e300", "not seconds since the epoch", ts=1e300)
    bad_t("ts -1e300", ">= 0", ts=-1e300)
    bad_t("ts year 9999", "not seconds since the epoch", ts=253_402_300_799)
    # 2. values the dead letter cannot hold whole
    bad_t("12.5 MiB", "record too large", merchant_category="m" * BIG)
    bad_t("1 MiB", "record too large", merchant_category="m" * (1 << 20))
    bad_t("100 KiB", "record too large", merchant_category="m" * 100_000)
    t("200 KiB key", "does not match customer_id", ok, key=b"k" * 200_000)
    # 3. null values
    t("null value", "null value", None)
    # 4. event times that would move stream time
    bad_t("ts milliseconds", "looks like milliseconds", ts=now * 1000)
    bad_t("ts microseconds", "looks like microseconds", ts=now * 1e6)
    bad_t("ts 0", "an unset timestamp", ts=0)
    bad_t("ts 2 days ahead", "ahead of the worker's clock", ts=now + 2 * 86400)
    bad_t("ts 40 years back", "before the worker's clock", ts=now - 40 * 365.25 * 86400)
    # 5. ambiguous JSON
    t("duplicated amount", "duplicated key 'amount'", ok[:-1] + b',"amount":999999}')
    t("spaced duplicate", "duplicated key", ok[:-1] + b' , "txn_id" : "y"}')
    t("duplicated attrs key", "duplicated key 'a'", ok[:-1] + b',"attrs":{"a":1,"a":2}}')
    # the usual
    t("malformed", "malformed JSON", b'{"txn_id": "x", "customer_id": ')
    t("empty", "malformed JSON", b"")
    t("json null", "expected a JSON object, got null", b"null")
    t("array", "expected a JSON object, got array", b"[" + ok + b"]")
    t("NaN", "malformed JSON", ok.replace(b'"amount":10.0', b'"amount":NaN'))
    t("Infinity", "malformed JSON", ok.replace(b'"amount":10.0', b'"amount":Infinity'))
    t("1e400", "malformed JSON", ok.replace(b'"amount":10.0', b'"amount":1e400'))
    t("depth 10000", "malformed JSON", b'{"a":' * 10_000 + b"1" + b"}" * 10_000)
    t("latin-1", "malformed JSON", ok.replace(b'"x-ok"', b'"x-\xe9"'))
    t("utf-16", "malformed JSON", ok.decode().encode("utf-16"))
    t("bom", "malformed JSON", b"\xef\xbb\xbf" + ok)
    t("lone surrogate", "malformed JSON", ok.replace(b'"x-ok"', b'"x-\\ud800"'))
    t("trailing garbage", "malformed JSON", ok + b"}")
    bad_t("amount string", "field 'amount'", amount="12")
    bad_t("amount negative", "field 'amount'", amount=-1)
    bad_t("amount 1e9+1", "field 'amount'", amount=1e9 + 1)
    bad_t("label true", "field 'label'", label=True)
    bad_t("label 2", "field 'label'", label=2)
    bad_t("country de", "field 'country'", country="de")
    bad_t("channel POS", "field 'channel'", channel="POS")
    bad_t("unknown field", "unknown field", coupon="x")
    bad_t("attrs 1e300", "attrs.a", attrs={"a": 1e300})
    bad_t("attrs 65", "at most 64", attrs={f"a{i}": 1 for i in range(65)})
    bad_t("silo 99", "unknown silo 99", silo=99)
    bad_t("silo 2**64", "unknown silo", silo=2**64)
    t("missing amount", "missing required field 'amount'",
      dumps({k: v for k, v in good_t("missing amount").items() if k != "amount"}))  # fmt: skip
    t("txn_id 65", "field 'txn_id'", dumps({**good_t("txn_id 65"), "txn_id": "t" * 65}))
    t("key mismatch", "does not match customer_id", ok, key=b"someone-else")
    t("key latin-1", "does not match customer_id", ok, key=b"h-\xe9")
    # accepted although odd: processed (they prove the worker does not over-reject)
    t("control char id", None, dumps({**good_t("control char id"), "txn_id": "x-\u0001-\u007f"}))
    t("emoji", None, dumps(txn("h-😀", "x-😀", now - 120)), key="h-😀".encode())
    t("whitespace", None, b" \n " + dumps(good_t("whitespace")) + b" \t")
    t("escaped quote colon", None, dumps({**good_t("escaped quote colon"), "txn_id": 'x":1'}))
    t("label 1.0", None, dumps(good_t("label 1.0", label=1.0)))
    t("ts 2005", None, dumps(txn("h-ts 2005", "x-ts 2005", 1_112_313_600.0)))
    t("ts 50 min ahead", None, dumps(txn("h-ts 50 min ahead", "x-50", now + 3000)))

    def c(name: str, reason: str | None, value: bytes | None, key: Any = "own") -> None:
        key = f"hc-{name}".encode() if key == "own" else key
        cases.append(Case(name, "customer", key, value, reason))

    def bad_c(name: str, reason: str, **fields: Any) -> None:
        c(name, reason, dumps({**customer(f"hc-{name}", now - 60), **fields}))

    # (a keyless record on the compacted customers topic is refused by the broker itself)
    c("tombstone latin-1 key", "not UTF-8", None, key=b"\xe9\xff")
    c("tombstone long key", "not a customer id", None, key=b"c" * 65)
    bad_c("customer silo 99", "unknown silo 99", silo=99)
    bad_c("customer age true", "field 'age'", age=True)
    bad_c("customer age 121", "field 'age'", age=121)
    bad_c("customer ts ms", "looks like milliseconds", ts=now * 1000)
    bad_c("customer ts 2**64", "not seconds since the epoch", ts=2**64)
    bad_c("customer country DEU", "field 'home_country'", home_country="DEU")
    bad_c("customer attrs name 65", "1..64", attrs={"a" * 65: 1.0})
    c("customer malformed", "malformed JSON", b'{"customer_id": "x", "silo"')
    c("customer duplicated silo", "duplicated key 'silo'",
      dumps(customer("hc-customer duplicated silo", now))[:-1] + b',"silo":0}')  # fmt: skip
    c("customer key mismatch", "does not match customer_id", dumps(customer("other", now)))
    c("customer 2005", None, dumps(customer("hc-customer 2005", 1_112_313_600.0)))

    def q(name: str, reason: str | None, value: bytes | None, key: bytes | None = None) -> None:
        key = b"hq" if key is None else key
        cases.append(Case(name, "chat", key, value, reason))

    def req(name: str, **fields: Any) -> bytes:
        return dumps({"request_id": f"q-{name}", "customer_id": "hq", **fields})

    q("chat null value", "null value", None)
    q("chat malformed", "malformed JSON", b'{"request_id": ')
    q("chat no request_id", "missing required field 'request_id'", dumps({"customer_id": "hq"}))
    q("chat question 2001", "field 'question'", req("chat question 2001", question="q" * 2001))
    q("chat reply to a silo", "refused", req("chat reply to a silo", reply_topic="silo.0.batches"))
    q("chat key mismatch", "does not match customer_id", req("chat key mismatch"), key=b"x")
    q("chat duplicated key", "duplicated key 'customer_id'",
      req("chat duplicated key")[:-1] + b',"customer_id":"hq"}')  # fmt: skip
    q("chat 1 MiB", "record too large", req("chat 1 MiB", question="q" * (1 << 20)))
    q("chat nested extra", None, req("chat nested extra", extra={"a": [{"b": {}}]}))
    return cases


def key_on(partition: int, prefix: str) -> str:
    """A key that Kafka's partitioner puts on ``partition`` (the worker forwards the others)."""
    return next(
        k
        for i in range(10_000)
        if partition_for((k := f"{prefix}-{i}").encode(), PARTITIONS) == partition
    )


def start_worker(bootstrap: str, ns: str, data_dir: Path) -> WorkerProcess:
    """A worker on its own (it creates its table changelogs itself: app.stream.changelogs)."""
    return WorkerProcess(bootstrap, ns, data_dir, args=("--batch-ms", "300")).start()


def _wait_committed(bootstrap: str, ns: str, worker: WorkerProcess) -> None:
    inputs = [namespaced(CUSTOMERS, ns), namespaced(TRANSACTIONS, ns)]
    try:
        wait_committed(bootstrap, worker_group(ns), inputs, timeout_s=120, worker=worker)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}\n{worker.log_tail()}") from None


def _wait(what: str, ready: Callable[[], bool], worker: WorkerProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        worker.check_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{worker.log_tail()}"
        time.sleep(0.5)


class Outputs:
    """What the worker wrote: enriched by txn_id, dead letters by source, replies by id."""

    def __init__(self, bootstrap: str, ns: str) -> None:
        self.bootstrap, self.ns = bootstrap, ns
        self.enriched: dict[str, dict[str, Any]] = {}
        self.letters: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.replies: dict[str, dict[str, Any]] = {}

    def read(self) -> Outputs:
        ns, bootstrap = self.ns, self.bootstrap
        for rec in read_topic(bootstrap, namespaced(FEATURES_ENRICHED, ns)):
            doc = orjson.loads(rec.value)
            self.enriched[doc["txn_id"]] = doc
        for topic in TOPIC_OF.values():
            for rec in read_topic(bootstrap, namespaced(dlq(topic), ns)):
                doc = orjson.loads(rec.value)
                assert len(rec.value) <= 900_000
                self.letters[(doc["topic"], doc["partition"], doc["offset"])] = doc
        for rec in read_topic(bootstrap, namespaced(CHATBOT_RESPONSES, ns)):
            doc = orjson.loads(rec.value)
            self.replies[doc["request_id"]] = doc
        return self


def test_hostile_records_never_stop_the_worker_nor_get_lost(
    kafka_bootstrap: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Prepare: customers with history (phase A), then every hostile case with canaries (B)
    ns = new_namespace(kafka_bootstrap, "hostile")
    now = time.time()
    sender = Sender(kafka_bootstrap, ns)
    worker = start_worker(kafka_bootstrap, ns, tmp_path)
    request.addfinalizer(lambda: worker.stop(signal.SIGKILL))  # no-op once stopped
    pid = worker.pid
    canaries: list[str] = []

    def canary(partition: int) -> None:
        tid = f"canary-{len(canaries)}"
        canaries.append(tid)
        cid = key_on(partition, "canary")
        sender.send("txn", cid.encode(), dumps(txn(cid, tid, now - 900 + len(canaries))), partition)

    def part(key: bytes) -> int:  # where a murmur2 producer puts it (no forwarding needed)
        return partition_for(key, PARTITIONS)

    history = {"far": [now - 3600 * h for h in (5, 4, 3, 2)], "dup": [now - 7200],
               "late": [now - 3600 * h for h in range(30, 0, -1)], "gone": [now - 600],
               "asker": [now - 300]}  # fmt: skip
    for cid in ("far", "gone", "asker"):
        sender.send("customer", cid.encode(), dumps(customer(cid, now - 86400)), part(cid.encode()))
    for cid, times in history.items():
        for i, ts in enumerate(times):
            sender.send("txn", cid.encode(), dumps(txn(cid, f"{cid}-{i}", ts)), part(cid.encode()))
    for p in range(PARTITIONS):
        canary(p)
    sender.flush()
    out = Outputs(kafka_bootstrap, ns)
    _wait("phase A", lambda: set(canaries) <= set(out.read().enriched), worker, 120)
    _wait_committed(kafka_bootstrap, ns, worker)

    cases = hostile_cases(now)
    # state-dependent cases on customers with history (same partition as their history)
    extra = [
        Case("repeated txn_id", "txn", b"dup", dumps(txn("dup", "dup-0", now - 7200)),
             "repeated txn_id 'dup-0'"),
        Case("late beyond history", "txn", b"late", dumps(txn("late", "late-x", now - 29.5 * 3600)),
             "late event"),
        Case("ahead of history", "txn", b"far", dumps(txn("far", "far-ahead", now + 3300)), None),
        Case("after the one ahead", "txn", b"far", dumps(txn("far", "far-next", now - 1800)), None),
        Case("tombstone", "customer", b"gone", None, None),
        Case("after the tombstone", "customer", b"gone", b"{", "malformed JSON"),
    ]  # fmt: skip
    cases += extra
    names = [c.name for c in cases]
    assert len(set(names)) == len(names) >= 60
    slots = []
    for case in cases:
        case.partition = part(case.key or b"")
        slots.append(sender.send(case.kind, case.key, case.value, case.partition))
        canary(case.partition)
    chat_canary = dumps({"request_id": "q-canary", "customer_id": "hq"})
    sender.send("chat", b"hq", chat_canary, part(b"hq"))

    # Execute
    sender.flush()
    for case, slot in zip(cases, slots, strict=True):
        case.offset = slot["offset"]
    expected_letters = {(namespaced(TOPIC_OF[c.kind], ns), c.partition, c.offset)
                        for c in cases if c.reason}  # fmt: skip
    _wait("phase B", lambda: set(canaries) <= set(out.read().enriched)
          and expected_letters <= set(out.letters) and "q-canary" in out.replies,
          worker, 180)  # fmt: skip
    _wait_committed(kafka_bootstrap, ns, worker)
    # phase C: what a deleted customer and an outlier must (not) change, seen from outside
    for cid in ("gone", "asker"):
        sender.send("chat", cid.encode(), dumps({"request_id": f"q-{cid}", "customer_id": cid}),
                    part(cid.encode()))  # fmt: skip
    sender.flush()
    _wait("answers", lambda: {"q-gone", "q-asker"} <= set(out.read().replies), worker, 60)
    sender.send("txn", b"gone", dumps(txn("gone", "gone-after", now - 60)), part(b"gone"))
    canary(0)
    sender.flush()
    _wait("phase C", lambda: {"gone-after", canaries[-1]} <= set(out.read().enriched), worker, 60)
    time.sleep(1.5)  # one more commit: nothing else may arrive
    out.read()
    alive_pid = worker.pid if worker.alive() else None
    code = worker.stop(signal.SIGTERM)
    changelog = read_topic(kafka_bootstrap, f"{worker_group(ns)}-profiles-changelog")
    windows_log = read_topic(kafka_bootstrap, f"{worker_group(ns)}-windows-changelog")

    # Assert: alive throughout, every canary through, every case as specified
    assert alive_pid == pid and worker.starts == 1, worker.log_tail()
    assert code == 0, worker.log_tail()
    assert set(canaries) <= set(out.enriched)
    wrong = []
    for case in cases:
        source = (namespaced(TOPIC_OF[case.kind], ns), case.partition, case.offset)
        letter = out.letters.get(source)
        if case.reason is None:
            if letter is not None:
                wrong.append((case.name, "dead-lettered", letter["reason"]))
        elif letter is None or case.reason not in letter["reason"]:
            wrong.append((case.name, case.reason, letter and letter["reason"]))
        elif case.value is None:
            if letter["value_b64"] is not None:
                wrong.append((case.name, "null value not kept as null"))
        elif letter["truncated"]:
            kept = base64.b64decode(letter["value_b64"])
            if (letter["value_bytes"], letter["value_sha256"]) != (
                len(case.value),
                hashlib.sha256(case.value).hexdigest(),
            ) or not case.value.startswith(kept):
                wrong.append((case.name, "truncated dead letter does not prove the original"))
        elif base64.b64decode(letter["value_b64"]) != case.value:
            wrong.append((case.name, "original bytes differ"))
    assert wrong == [], wrong
    # sent = processed + dead-lettered, 0 lost, nothing dead-lettered that was not expected
    processed_txns = {c.name for c in cases if c.kind == "txn" and c.reason is None
                      and orjson.loads(c.value or b"{}")["txn_id"] in out.enriched}  # fmt: skip
    processed_chat = {c.name for c in cases if c.kind == "chat" and c.reason is None
                      and orjson.loads(c.value or b"{}")["request_id"] in out.replies}  # fmt: skip
    customers_ok = {"customer 2005", "tombstone"}  # their effects are checked below
    dead = {c.name for c in cases if c.reason is not None}
    lost = set(names) - processed_txns - processed_chat - customers_ok - dead
    assert lost == set(), f"lost: {lost}"
    assert len(cases) == len(processed_txns | processed_chat | customers_ok) + len(dead)
    assert set(out.letters) == expected_letters, "dead letters nobody expected"
    # class 4: the event ahead changed neither the next event's windows nor its gap
    after = out.enriched["far-next"]["aggregates"]
    assert after["long_count"] == 4, after
    assert abs(after["customer_since_prev"] - 5400.0) < 1e-3, after  # before the fix: 0
    asker = out.replies["q-asker"]
    assert asker["status"] == "ok" and asker["activity"]["as_of"] <= time.time(), asker
    assert asker["activity"]["long"]["count"] == 1
    # class 3: the tombstone deleted the customer everywhere
    assert out.replies["q-gone"]["status"] == "unknown_customer", out.replies["q-gone"]
    assert out.enriched["gone-after"]["profile_missing"] is True
    assert out.enriched["gone-after"]["aggregates"]["long_count"] == 0
    gone = [r for r in changelog if r.key == b"gone"]
    assert gone and gone[-1].value == b"", "no tombstone in the profiles changelog"
    assert any(r.key == b"gone" and r.value == b"" for r in windows_log)
    # class 5: the repeated txn_id counted once
    assert out.enriched["dup-0"]["txn_id"] == "dup-0"
    print(f"\n{len(cases)} hostile cases, {len(dead)} dead-lettered, "
          f"{len(processed_txns | processed_chat | customers_ok)} processed, 0 lost; "
          f"{len(canaries)} canaries through one worker (pid {pid})")  # fmt: skip


def _committed(bootstrap: str, group: str, topic: str, partition: int) -> int:
    consumer = make_consumer(bootstrap, group)
    try:
        (tp,) = consumer.committed([TopicPartition(topic, partition)], timeout=30)
        return int(tp.offset)
    finally:
        consumer.close()


def test_a_restarted_worker_with_poison_at_its_committed_offset_is_up_in_seconds(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Prepare: a worker commits one transaction and stops; poison lands at its offset
    ns = new_namespace(kafka_bootstrap, "poison")
    now = time.time()
    topic = namespaced(TRANSACTIONS, ns)
    sender = Sender(kafka_bootstrap, ns)
    home = partition_for(b"c", PARTITIONS)
    out = Outputs(kafka_bootstrap, ns)
    t_first = time.monotonic()
    worker = start_worker(kafka_bootstrap, ns, tmp_path)
    try:
        sender.send("txn", b"c", dumps(txn("c", "first", now - 100)), home)
        sender.flush()
        _wait("first", lambda: "first" in out.read().enriched, worker, 120)
        first_s = time.monotonic() - t_first
        _wait("commit", lambda: _committed(kafka_bootstrap, worker_group(ns), topic, home) == 1,
              worker, 60)  # fmt: skip
        assert worker.stop(signal.SIGTERM) == 0
        poison = [
            dumps(txn("c", "p1", 2**70)),
            dumps(txn("c", "p2", 1e300)),
            dumps(txn("c", "p3", now, merchant_category="m" * BIG)),
            None,
        ]
        slots = [sender.send("txn", b"c", value, home) for value in poison]
        sender.send("txn", b"c", dumps(txn("c", "after", now - 50)), home)
        sender.flush()
        assert _committed(kafka_bootstrap, worker_group(ns), topic, home) == slots[0]["offset"]

        # Execute
        t0 = time.monotonic()
        worker.start()
        _wait("the transaction after the poison", lambda: "after" in out.read().enriched,
              worker, 120)  # fmt: skip
        up_s = time.monotonic() - t0
        time.sleep(2.0)  # survives its next commits too
        alive = worker.alive()
    finally:
        worker.stop(signal.SIGKILL if worker.alive() else signal.SIGTERM)

    # Assert
    print(
        f"\nrestart with 4 poison records at the committed offset: processing after {up_s:.1f} s "
        f"(the first start, no poison: {first_s:.1f} s)"
    )
    assert alive, worker.log_tail()
    assert up_s < 60, f"took {up_s:.1f} s"
    reasons = [out.letters[(topic, home, s["offset"])]["reason"] for s in slots]
    assert "not seconds" in reasons[0] and "not seconds" in reasons[1], reasons
    assert "too large" in reasons[2] and reasons[3] == "null value", reasons
