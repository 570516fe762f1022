"""The chatbot's answer about one customer, as pure functions (no Kafka, no Faust).

The worker gathers the facts (profile, window activity from
:func:`app.features.windows.activity_summary`, the latest transaction's row scored and
explained by the newest global model) and :func:`build_reply` turns them into the
responses-topic document (``topics/schemas/chatbot_response.schema.json``) with a
short plain-language ``answer`` a chatbot can show as is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.features.records import ChatRequest, Customer
from app.features.validation import InvalidRecord

__all__ = [
    "FEATURE_PHRASES",
    "RiskFacts",
    "build_reply",
    "check_reply_topic",
    "error_reply",
    "intent_of",
    "not_authorised_reply",
    "risk_level",
    "unknown_customer_reply",
]

logger = logging.getLogger(__name__)

FEATURE_PHRASES: dict[str, str] = {
    "amount_log1p": "the transaction amount",
    "amount_to_limit": "the amount relative to the credit limit",
    "hour_sin": "the time of day",
    "hour_cos": "the time of day",
    "is_night": "a night-time transaction",
    "channel_pos": "the card-present (POS) channel",
    "channel_online": "the online channel",
    "channel_atm": "the ATM channel",
    "channel_transfer": "the transfer channel",
    "is_foreign": "a transaction abroad",
    "profile_missing": "a missing customer profile",
    "age_100": "the customer's age",
    "income_band_4": "the income band",
    "credit_limit_log1p": "the credit limit",
    "tenure_years_log1p": "the customer's tenure",
    "segment_retail": "the retail segment",
    "segment_premium": "the premium segment",
    "segment_business": "the business segment",
    "segment_student": "the student segment",
    "seconds_since_prev_log1p": "the time since the previous transaction",
    "first_txn": "a first transaction",
    "amount_to_customer_mean": "the amount compared with the customer's usual spending",
    "new_merchant": "a merchant category new for this customer",
    "new_country": "a country new for this customer",
}
"""Plain-language names of feature columns (window columns are described generically)."""

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


def _phrase(column: str) -> str:
    if column in FEATURE_PHRASES:
        return FEATURE_PHRASES[column]
    for window, words in (("short_", "last-hour"), ("long_", "last-day")):
        if column.startswith(window):
            what = column[len(window) :].removesuffix("_log1p").replace("_", " ")
            return f"the {words} {what}"
    return column.replace("_", " ")


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
    """

    score: float | None
    top_features: Sequence[tuple[str, float]] = ()
    model_round: int | None = None
    model_version: str | None = None
    txn_id: str | None = None
    txn_ts: float | None = None
    event_score: float | None = None
    event_model_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "level": None if self.score is None else risk_level(self.score),
            "model_round": self.model_round,
            "model_version": self.model_version,
            "top_features": [
                {"feature": c, "contribution": round(v, 6), "meaning": _phrase(c)}
                for c, v in self.top_features
            ],
            "txn_id": self.txn_id,
            "txn_ts": self.txn_ts,
            "event_score": self.event_score,
            "event_model_version": self.event_model_version,
        }


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _profile_sentence(cid: str, profile: Customer | None, silo: int | None) -> str:
    where = f" in silo {silo}" if silo is not None else ""
    if profile is None:
        return f"Customer {cid}{where} has no profile on record yet."
    return (
        f"Customer {cid}{where} is a {profile.age}-year-old {profile.segment} customer "
        f"from {profile.home_country} with a credit limit of {_money(profile.credit_limit)} "
        f"and {profile.tenure_months} months with the bank."
    )


def _activity_sentence(activity: dict[str, Any]) -> str:
    short, long_ = activity["short"], activity["long"]
    hours = activity["short_s"] / 3600
    days = activity["long_s"] / 86400
    short_span = "the last hour" if hours == 1 else f"the last {hours:g} hours"
    long_span = "the last day" if days == 1 else f"the last {days:g} days"
    parts = [
        f"In {short_span} they made {short['count']} transaction(s) totalling "
        f"{_money(short['sum'])}; in {long_span} {long_['count']} totalling "
        f"{_money(long_['sum'])} (largest {_money(long_['max'])}, "
        f"{long_['distinct_merchants']} merchant categories, "
        f"{long_['distinct_countries']} countries)."
    ]
    if activity.get("lifetime_count"):
        parts.append(
            f"Overall {activity['lifetime_count']} transactions, "
            f"{_money(activity['lifetime_mean'] or 0.0)} on average."
        )
    return " ".join(parts)


def _risk_sentence(risk: RiskFacts) -> str:
    if risk.model_version is None:
        return "No global model has been trained yet, so there is no risk score."
    if risk.score is None:
        return (
            f"The current model (round {risk.model_round}) has not seen a transaction of "
            "this customer yet, so there is no risk score."
        )
    drivers = [_phrase(c) for c, v in risk.top_features if v > 0][:3]
    calming = [_phrase(c) for c, v in risk.top_features if v < 0][:2]
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
    profile: Customer | None,
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
        "profile": None if profile is None else profile.to_dict(),
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
