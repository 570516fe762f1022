"""The chatbot's answer about one customer, as pure functions (no Kafka, no Faust).

The worker gathers the facts (the key's newest table version, the window activity of
its pipeline from :func:`app.pipeline.activity.activity`, the latest row scored and
explained by the newest global model, the features named by
:func:`app.pipeline.activity.feature_phrase`) and :func:`build_reply` turns them into the
responses-topic document (``topics/schemas/chatbot_response.schema.json``) with a
short plain-language ``answer`` a chatbot can show as is. Nothing here knows the fraud
pipeline's features or windows: a custom pipeline gets answers in its own terms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from app.features.records import ChatRequest, Customer
from app.features.validation import InvalidRecord

__all__ = [
    "RiskFacts",
    "build_reply",
    "check_reply_topic",
    "error_reply",
    "intent_of",
    "not_authorised_reply",
    "profile_dict",
    "risk_level",
    "unknown_customer_reply",
]

logger = logging.getLogger(__name__)

_INTENT_WORDS = {
    "risk": ("risk", "fraud", "score", "suspicious", "safe", "danger"),
    "activity": ("spend", "spent", "activity", "transaction", "hour", "day", "recent", "bought"),
    "profile": ("who", "profile", "segment", "age", "limit", "silo"),
}


def intent_of(request: ChatRequest) -> str:
    """``risk``, ``activity``, ``profile`` or ``summary`` (explicit intent first)."""
    if request.intent in _INTENT_WORDS or request.intent == "summary":
        return str(request.intent)
    text = (request.question or "").lower()
    for intent, words in _INTENT_WORDS.items():
        if any(w in text for w in words):
            return intent
    return "summary"


def risk_level(score: float) -> str:
    """``low`` below 0.3, ``elevated`` below 0.7, else ``high``."""
    return "low" if score < 0.3 else "elevated" if score < 0.7 else "high"


def _plain(column: str) -> str:
    return column.removesuffix("_log1p").replace("_", " ")


@dataclass(frozen=True, slots=True)
class RiskFacts:
    """What the model says about the customer's latest transaction.

    Attributes
    ----------
    score : float or None
        Score of the latest transaction's row by the newest model (None: no model or no
        transaction seen).
    top_features : sequence of (column, contribution)
        Gradient x input of the logit; positive pushes towards fraud.
    model_round, model_version : the newest model (None before the first one).
    txn_id, txn_ts : the latest transaction of the customer, if any.
    event_score, event_model_version : the score the transaction got when it streamed by.
    phrase : callable
        Plain-language name of a feature (the pipeline's, see ``feature_phrase``).
    """

    score: float | None
    top_features: Sequence[tuple[str, float]] = ()
    model_round: int | None = None
    model_version: str | None = None
    txn_id: str | None = None
    txn_ts: float | None = None
    event_score: float | None = None
    event_model_version: str | None = None
    phrase: Callable[[str], str] = _plain

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level": None if self.score is None else risk_level(self.score),
            "model_round": self.model_round,
            "model_version": self.model_version,
            "top_features": [
                {"feature": c, "contribution": round(v, 6), "meaning": self.phrase(c)}
                for c, v in self.top_features
            ],
            "txn_id": self.txn_id,
            "txn_ts": self.txn_ts,
            "event_score": self.event_score,
            "event_model_version": self.event_model_version,
        }


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _profile_sentence(cid: str, profile: Any, silo: int | None) -> str:
    where = f" in silo {silo}" if silo is not None else ""
    if profile is None:
        return f"Customer {cid}{where} has no profile on record yet."
    if isinstance(profile, Customer):
        return (
            f"Customer {cid}{where} is a {profile.age}-year-old {profile.segment} customer "
            f"from {profile.home_country} with a credit limit of "
            f"{_money(profile.credit_limit)} and {profile.tenure_months} months with the bank."
        )
    fields = ", ".join(f"{k} {v}" for k, v in profile_dict(profile).items())
    return f"Key {cid}{where} has this table row: {fields}."


def profile_dict(profile: Any) -> dict[str, Any]:
    """A table version as JSON: a bank profile's fields, or a ``json`` row's values."""
    if isinstance(profile, Customer):
        return profile.to_dict()
    if isinstance(profile, dict):
        return profile
    return dict(getattr(profile, "values", {}))


def _span(seconds: int) -> str:
    from app.pipeline.activity import span_words

    return f"the last {span_words(seconds)}"


def _activity_sentence(activity: dict[str, Any]) -> str:
    parts = []
    for name, entry in activity.items():
        size = activity.get(f"{name}_s")
        if not isinstance(entry, dict) or not isinstance(size, int):
            continue
        text = f"In {_span(size)} ({name}) they made {entry.get('count', 0)} transaction(s)"
        details = []
        for agg, value in entry.items():
            if value is None or agg in ("count", "since_prev"):
                continue
            what = agg.replace("_", " ")
            details.append(f"{what} {_money(value) if isinstance(value, float) else value}")
        parts.append(text + (f" ({', '.join(details)})." if details else "."))
    if activity.get("lifetime_count"):
        parts.append(f"Overall {activity['lifetime_count']} transactions.")
    return " ".join(parts) or "No activity on record."


def _risk_sentence(risk: RiskFacts) -> str:
    if risk.model_version is None:
        return "No global model has been trained yet, so there is no risk score."
    if risk.score is None:
        return (
            f"The current model (round {risk.model_round}) has not seen a transaction of "
            "this customer yet, so there is no risk score."
        )
    drivers = [risk.phrase(c) for c, v in risk.top_features if v > 0][:3]
    calming = [risk.phrase(c) for c, v in risk.top_features if v < 0][:2]
    text = (
        f"The latest transaction scores {risk.score:.2f} ({risk_level(risk.score)} risk) "
        f"with the global model of round {risk.model_round} ({risk.model_version})."
    )
    if drivers:
        text += f" Raising it most: {', '.join(dict.fromkeys(drivers))}."
    if calming:
        text += f" Lowering it: {', '.join(dict.fromkeys(calming))}."
    return text


def build_reply(
    request: ChatRequest,
    *,
    profile: Any,
    silo: int | None,
    activity: dict[str, Any],
    risk: RiskFacts,
) -> dict[str, Any]:
    """The ``status: ok`` answer; the sentence the intent asks about comes first."""
    sentences = {
        "profile": _profile_sentence(request.customer_id, profile, silo),
        "activity": _activity_sentence(activity),
        "risk": _risk_sentence(risk),
    }
    intent = intent_of(request)
    order = ["profile", "activity", "risk"]
    if intent in sentences:
        order.remove(intent)
        order.insert(0, intent)
    return {
        "request_id": request.request_id,
        "status": "ok",
        "customer_id": request.customer_id,
        "intent": intent,
        "silo": silo,
        "profile": None if profile is None else profile_dict(profile),
        "activity": activity,
        "risk": risk.to_dict(),
        "answer": " ".join(sentences[k] for k in order),
    }


def unknown_customer_reply(request: ChatRequest) -> dict[str, Any]:
    """The answer for a customer with neither a profile nor a transaction."""
    return {
        "request_id": request.request_id,
        "status": "unknown_customer",
        "customer_id": request.customer_id,
        "silo": None,
        "profile": None,
        "activity": None,
        "risk": None,
        "answer": f"I do not know customer {request.customer_id}: no profile and no "
        "transactions have reached the stream for this id.",
    }


def error_reply(request_id: str, reason: str) -> dict[str, Any]:
    """The answer to a malformed request whose id could still be read."""
    return {
        "request_id": request_id,
        "status": "error",
        "error": reason,
        "answer": f"I could not read that request: {reason}",
    }


def check_reply_topic(reply_topic: str | None, responses_topic: str) -> None:
    """Accept a request's ``reply_topic`` only if it is absent or the requester's own.

    Replies carry a customer's profile and activity, so where they go is not the
    requester's choice: any other topic (a silo's batches, the model topic, a DLQ, a
    topic that does not exist yet) raises :class:`InvalidRecord`.
    """
    if reply_topic is not None and reply_topic != responses_topic:
        raise InvalidRecord(
            f"reply_topic {reply_topic[:80]!r} refused: replies go only to "
            f"{responses_topic!r}, the requester's responses topic"
        )


def not_authorised_reply(request: ChatRequest, tenant: str, silo: int) -> dict[str, Any]:
    """The answer to a silo tenant asking about a customer it may not see: no data at all.

    The same answer whether the customer belongs to another silo or is unknown, so the
    reply does not tell a tenant which customers other silos have.
    """
    return {
        "request_id": request.request_id,
        "status": "not_authorised",
        "customer_id": request.customer_id,
        "answer": f"Tenant {tenant} is not authorised to ask about customer "
        f"{request.customer_id}: it may ask only about customers of silo {silo}.",
    }
