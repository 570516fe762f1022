"""The chatbot's answer builder and the stream loop (model swap, enriched, chat) without Kafka."""

import numpy as np
import orjson

from app.features.records import ChatRequest, Customer, Transaction
from app.features.spec import FeatureSpec
from app.features.windows import CustomerWindows, activity_summary, update
from app.model.config import ModelConfig
from app.model.frame import ModelFrame, ModelMeta, encode_model, model_version_for
from app.model.params import init_arrays
from app.pipeline.activity import activity, feature_phrase
from app.pipeline.dsl import WindowStep
from app.pipelines.fraud import pipeline
from app.stream.chatbot import (
    RiskFacts,
    build_reply,
    error_reply,
    intent_of,
    unknown_customer_reply,
)
from app.stream.loop import StreamLoop
from app.stream.model_follower import load_live_model
from app.stream.processor import StreamProcessor
from tests.native_activity import as_native, native_subset
from topics import (
    CHATBOT_REQUESTS,
    CHATBOT_RESPONSES,
    OPERATOR,
    chat_requests,
    chat_responses,
    dlq,
    silo_tenant,
)

SPEC = FeatureSpec()
T0 = 1_700_000_000.0


def _activity() -> dict:  # type: ignore[type-arg]
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    for i, amount in enumerate([10.0, 20.0, 300.0]):
        processor.on_transaction(_txn(i, "c1", T0 + 600 * i, amount), b"c1", 0, i,
                                 int(T0 * 1000))  # fmt: skip
    plans = [s.plan for s in processor.pipeline.rows.steps_of(WindowStep)]
    return activity(plans, processor.window_state("c1"), T0 + 1800)


def test_reply_puts_the_asked_topic_first_and_names_model_and_drivers() -> None:
    # Prepare
    request = ChatRequest("r1", "c1", question="Is this customer a fraud risk?")
    profile = Customer("c1", 2, T0, age=31, segment="premium", credit_limit=8000.0)
    risk = RiskFacts(0.91, [("new_country", 1.2), ("amount_log1p", 0.8), ("is_night", -0.3)],
                     7, "7-abc", "t2", T0 + 1200, 0.5, "6-def",
                     phrase=lambda c: feature_phrase(c, pipeline))  # fmt: skip

    # Execute
    reply = build_reply(request, profile=profile, silo=2, activity=_activity(), risk=risk)

    # Assert
    assert reply["status"] == "ok" and reply["request_id"] == "r1" and reply["silo"] == 2
    assert reply["intent"] == "risk"
    answer = reply["answer"]
    assert answer.startswith("The latest transaction scores 0.91 (high risk)")
    assert "round 7" in answer and "a country new for this customer" in answer
    assert "Lowering it: a night-time transaction" in answer
    assert "In the last hour (short) they made 3 transaction(s) (sum amount 330.00" in answer
    assert reply["risk"]["top_features"][0]["feature"] == "new_country"
    orjson.dumps(reply)  # JSON-ready


def test_reply_without_model_or_profile_says_so() -> None:
    request = ChatRequest("r2", "c9", intent="activity")
    reply = build_reply(
        request, profile=None, silo=None, activity=_activity(), risk=RiskFacts(None)
    )
    assert reply["answer"].startswith("In the last hour (short) they made 3 transaction(s)")
    assert "no profile on record" in reply["answer"]
    assert "No global model has been trained yet" in reply["answer"]


def test_unknown_and_error_replies() -> None:
    unknown = unknown_customer_reply(ChatRequest("r3", "nobody"))
    assert unknown["status"] == "unknown_customer" and "nobody" in unknown["answer"]
    error = error_reply("r4", "field 'customer_id': required")
    assert error["status"] == "error" and error["request_id"] == "r4"


def test_intent_detection() -> None:
    assert intent_of(ChatRequest("r", "c", question="how much did they spend today?")) == "activity"
    assert intent_of(ChatRequest("r", "c", question="who is this?")) == "profile"
    assert intent_of(ChatRequest("r", "c", intent="risk", question="who")) == "risk"
    assert intent_of(ChatRequest("r", "c")) == "summary"


def _model_frame(round_: int, seed: int) -> bytes:
    config = ModelConfig(n_features=SPEC.n_features, seed=seed)
    arrays = init_arrays(config)
    meta = ModelMeta(model_name="m", round=round_, spec_version=SPEC.version,
                     model_version=model_version_for(round_, arrays),
                     n_features=SPEC.n_features, config=config.to_dict())  # fmt: skip
    mean, std = np.zeros(SPEC.n_features), np.ones(SPEC.n_features)
    return encode_model(ModelFrame(meta, arrays, mean, std))


def _txn(i: int, cid: str, ts: float, amount: float) -> bytes:
    return orjson.dumps(Transaction(f"t{i}", cid, ts, amount, "grocery", label=0).to_dict())


def test_loop_swaps_models_between_events_and_answers_chat() -> None:
    # Prepare
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    loop = StreamLoop(SPEC, processor, outbox=None, follower=None)
    processor.on_customer(orjson.dumps(Customer("c1", 1, T0).to_dict()), b"c1", 0)
    first, second = load_live_model(_model_frame(1, 1), SPEC.version, SPEC.n_features), \
        load_live_model(_model_frame(2, 2), SPEC.version, SPEC.n_features)  # fmt: skip
    frames = []
    reference = CustomerWindows()

    # Execute: 3 unscored events, model 1, 3 events, model 2, 3 events
    for i in range(9):
        if i == 3:
            frames += loop.install(first, 0)
        if i == 6:
            frames += loop.install(second, 0)
        ts, amount = T0 + 500 * i, 10.0 + i
        joined = processor.on_transaction(_txn(i, "c1", ts, amount), b"c1", 0, i, int(ts * 1000))
        assert joined is not None
        loop.on_joined(joined, 123)
        update(reference, Transaction(f"t{i}", "c1", ts, amount, "grocery"), SPEC.windows)
    frames += processor.flush_all(0)
    reply = loop.on_chat_request(orjson.dumps({"request_id": "q", "customer_id": "c1"}),
                                 b"c1", CHATBOT_REQUESTS, 0, 0)  # fmt: skip
    unknown = loop.on_chat_request(orjson.dumps({"request_id": "u", "customer_id": "zz"}),
                                   b"zz", CHATBOT_REQUESTS, 0, 1)  # fmt: skip
    broken = loop.on_chat_request(b'{"request_id": "b", "customer_id": 5}', b"x",
                                  CHATBOT_REQUESTS, 0, 2)  # fmt: skip
    anonymous = loop.on_chat_request(b"not json", None, CHATBOT_REQUESTS, 0, 3)

    # Assert: enriched records carry the model that scored them
    enriched = [orjson.loads(v) for t, _k, v in loop.sent if t == "features.enriched"]
    assert [e["model_version"] for e in enriched] == [None] * 3 + [first.version] * 3 + [
        second.version
    ] * 3
    assert all((e["score"] is None) == (e["model_version"] is None) for e in enriched)
    assert enriched[5]["aggregates"]["long_count"] == 5
    # frames never mix models: one per model version, rows 3 + 3 + 3
    from app.features.frames import decode_batch

    metas = [decode_batch(f).meta for _s, f in frames]
    assert [(m.model_version, m.rows) for m in metas] == [
        (None, 3), (first.version, 3), (second.version, 3)
    ]  # fmt: skip
    # chat: aggregates equal the reference, newest model, explanation
    assert reply is not None and reply["status"] == "ok"
    want = activity_summary(reference, reply["activity"]["as_of"], SPEC.windows)
    assert as_native(reply["activity"]) == native_subset(want)
    assert reply["risk"]["model_version"] == second.version and reply["silo"] == 1
    assert len(reply["risk"]["top_features"]) == 5
    assert unknown is not None and unknown["status"] == "unknown_customer"
    assert broken is not None and broken["status"] == "error" and broken["request_id"] == "b"
    assert anonymous is None
    dead = [t for t, _k, _v in loop.sent if t == dlq(CHATBOT_REQUESTS)]
    assert len(dead) == 2


def test_loop_refuses_a_reply_topic_other_than_the_requesters_own() -> None:
    # Prepare: a known customer, requests naming other topics as reply_topic
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    loop = StreamLoop(SPEC, processor, outbox=None, follower=None)
    processor.on_customer(orjson.dumps(Customer("c1", 1, T0).to_dict()), b"c1", 0)
    targets = ["silo.0.batches", "fl.model.global", "dlq.bank.transactions", "new.topic"]

    # Execute
    replies = [
        loop.on_chat_request(orjson.dumps({"request_id": f"r{i}", "customer_id": "c1",
                                           "reply_topic": t}), b"c1", CHATBOT_REQUESTS, 0, i)
        for i, t in enumerate(targets)
    ]  # fmt: skip
    own = loop.on_chat_request(
        orjson.dumps({"request_id": "ok", "customer_id": "c1", "reply_topic": CHATBOT_RESPONSES}),
        b"c1", CHATBOT_REQUESTS, 0, 9,
    )  # fmt: skip

    # Assert: only error replies, all on chatbot.responses; one dead letter each
    assert all(r is not None and r["status"] == "error" for r in replies)
    assert all("refused" in r["error"] for r in replies if r is not None)
    assert own is not None and own["status"] == "ok"
    topics = [t for t, _k, _v in loop.sent]
    assert set(topics) == {CHATBOT_RESPONSES, dlq(CHATBOT_REQUESTS)}
    assert topics.count(dlq(CHATBOT_REQUESTS)) == len(targets)
    leaked = [v for t, _k, v in loop.sent if t != CHATBOT_RESPONSES and b'"profile"' in v]
    assert leaked == []


def test_silo_tenants_see_only_their_own_customers_operators_see_all() -> None:
    # Prepare: c1 in silo 1 (profile), c2 in silo 2 (a transaction), tenants of silos 1, 2
    processor = StreamProcessor(SPEC, (0, 1, 2), max_rows=1000, max_ms=10_000)
    tenants = (OPERATOR, silo_tenant(1), silo_tenant(2))
    loop = StreamLoop(SPEC, processor, outbox=None, follower=None, tenants=tenants)
    processor.on_customer(orjson.dumps(Customer("c1", 1, T0).to_dict()), b"c1", 0)
    processor.on_customer(orjson.dumps(Customer("c2", 2, T0).to_dict()), b"c2", 0)
    joined = processor.on_transaction(_txn(0, "c2", T0 + 5, 12.0), b"c2", 0, 0, int(T0 * 1000))
    assert joined is not None
    loop.on_joined(joined)

    def ask(tenant: str, cid: str) -> dict:  # type: ignore[type-arg]
        raw = orjson.dumps({"request_id": f"{tenant}-{cid}", "customer_id": cid})
        reply = loop.on_chat_request(raw, cid.encode(), chat_requests(tenant), 0, 0)
        assert reply is not None
        return reply

    # Execute
    own = ask(silo_tenant(1), "c1")
    other = ask(silo_tenant(1), "c2")
    unknown = ask(silo_tenant(2), "nobody")
    operator = [ask(OPERATOR, "c1"), ask(OPERATOR, "c2")]

    # Assert: data only for the own silo's customer; nothing at all for another silo's
    assert own["status"] == "ok" and own["profile"]["customer_id"] == "c1"
    assert other == {"request_id": f"{silo_tenant(1)}-c2", "status": "not_authorised",
                     "customer_id": "c2", "answer": other["answer"]}  # fmt: skip
    assert "not authorised" in other["answer"] and "silo 1" in other["answer"]
    assert unknown["status"] == "not_authorised"  # no oracle for other silos' customers
    assert [r["status"] for r in operator] == ["ok", "ok"] and operator[1]["silo"] == 2
    # every reply on its tenant's own responses topic
    sent = [(t, orjson.loads(v)["request_id"]) for t, _k, v in loop.sent if "responses" in t]
    assert sent == [
        (chat_responses(silo_tenant(1)), f"{silo_tenant(1)}-c1"),
        (chat_responses(silo_tenant(1)), f"{silo_tenant(1)}-c2"),
        (chat_responses(silo_tenant(2)), f"{silo_tenant(2)}-nobody"),
        (chat_responses(OPERATOR), f"{OPERATOR}-c1"),
        (chat_responses(OPERATOR), f"{OPERATOR}-c2"),
    ]
    assert loop.counters.chat_denied == 2


def test_a_tenant_cannot_send_its_reply_to_another_tenant() -> None:
    processor = StreamProcessor(SPEC, (0, 1), max_rows=1000, max_ms=10_000)
    loop = StreamLoop(SPEC, processor, None, None, tenants=(OPERATOR, silo_tenant(0)))
    processor.on_customer(orjson.dumps(Customer("c1", 0, T0).to_dict()), b"c1", 0)
    raw = orjson.dumps({"request_id": "x", "customer_id": "c1",
                        "reply_topic": chat_responses(OPERATOR)})  # fmt: skip

    reply = loop.on_chat_request(raw, b"c1", chat_requests(silo_tenant(0)), 0, 0)

    assert reply is not None and reply["status"] == "error"
    assert [t for t, _k, _v in loop.sent] == [
        dlq(chat_requests(silo_tenant(0))), chat_responses(silo_tenant(0))
    ]  # fmt: skip
    # a record on a topic that is no tenant's gets no reply at all
    assert loop.on_chat_request(raw, b"c1", "bank.transactions", 0, 1) is None
