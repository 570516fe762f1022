"""The global model onto a site's own Kafka cluster, relayed by the site's ClientApp.

The ServerApp (``fl-server``) publishes every global model to the operator's cluster only.
A silo whose site runs its own cluster (``fl up --silo-kafka``) would leave that site's
stream worker without a model to score with; its ClientApp receives every global model
over Flower anyway, so it relays it: the node config's ``model-kafka-config`` names the
site's ``site-<id>`` principal, which may write the site's ``fl.model.global`` and nothing
else. Nothing changes on the operator's cluster.

A train message of round r+1 carries the global model of round r (``model-round`` in its
config) with the mean/std it was published with; the frame rebuilt from it has the
operator's parameters, standardisation, spec, round, model version and architecture. Not
the server's metrics: they describe every silo (per-silo figures, the offset ledger) and
stay with the operator. The last model of a run that ends arrives with the server's final
confirm-only message, so a site lags the operator by at most one round.

A model is relayed once (``context.state`` remembers the last version; idle attempts
resend the same model). A failed relay is logged and does not fail the round: the next
message carries the model again.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict

import topics
from app.fl.config import FLConfig
from app.fl.messages import ARRAYS, CONFIG, arrays_from_record, parse_train_message
from app.kafka.clients import delivery_errors, make_producer
from app.kafka.security import acting_as, read_client_config
from app.model.frame import ModelFrame, ModelMeta, encode_model, model_version_for

__all__ = ["MODEL_ROUND", "relay_global_model", "site_frame"]

logger = logging.getLogger(__name__)

MODEL_ROUND = "model-round"
"""Config key of a train message: the round of the global model it carries (0: untrained)."""
_STATE_KEY = "fedstream.site-model"
_QUICK = {"linger.ms": 0, "message.timeout.ms": 10_000}  # a site down delays a round <= 10 s


def site_frame(msg: Message, cfg: FLConfig, relayed_by: str) -> tuple[bytes, str] | None:
    """The model frame of the global model ``msg`` carries; None when it carries none
    (an untrained model of round 0, or a message without parameters)."""
    content = msg.content
    config = content.config_records.get(CONFIG)
    model_round = int(config.get(MODEL_ROUND, 0)) if config is not None else 0  # type: ignore[arg-type]
    if model_round <= 0 or ARRAYS not in content.array_records:
        return None
    from app.model.params import param_names  # JAX/Flax: only when there is a model

    ins = parse_train_message(msg)
    model_cfg = cfg.model_config(ins.n_features)  # the server's (no client-side proximal term)
    arrays = arrays_from_record(ins.arrays_record, param_names(model_cfg))
    version = model_version_for(model_round, arrays)
    meta = ModelMeta(
        model_name=cfg.model_name,
        round=model_round,
        spec_version=ins.spec_version,
        model_version=version,
        n_features=ins.n_features,
        config=model_cfg.to_dict(),
        metrics={"relayed_by": relayed_by},
    )
    return encode_model(ModelFrame(meta, arrays, ins.mean, ins.std)), version


def relay_global_model(
    msg: Message, cfg: FLConfig, kafka_config: str, state: RecordDict | None = None
) -> str | None:
    """Publish the global model of ``msg`` to the cluster ``kafka_config`` names, as its
    principal; returns the model version relayed (None: nothing new, or it failed)."""
    if not kafka_config:
        return None
    try:
        ident = read_client_config(Path(kafka_config))
        built = site_frame(msg, cfg, ident.principal)
        if built is None:
            return None
        frame, version = built
        if state is not None and _last_relayed(state) == version:
            return None
        with acting_as(ident):  # only this producer: the silo's reads stay as silo-<id>
            producer = make_producer(ident.bootstrap, **_QUICK)
        errors = delivery_errors()
        producer.produce(topics.MODEL_GLOBAL, value=frame, key=cfg.model_name, on_delivery=errors)
        if producer.flush(15.0) or errors.failed:
            raise RuntimeError(f"delivery failed: {errors.first or 'timed out'}")
    except Exception as exc:  # the site's copy must never cost the round (see module)
        logger.warning("could not relay the global model to %s: %s", kafka_config, exc)
        return None
    if state is not None:
        state.config_records[_STATE_KEY] = ConfigRecord({"version": version})
    logger.info("global model %s relayed to %s as %s", version, ident.bootstrap, ident.principal)
    return version


def _last_relayed(state: RecordDict) -> str | None:
    record = state.config_records.get(_STATE_KEY)
    return None if record is None else str(record.get("version"))
