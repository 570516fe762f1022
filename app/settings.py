"""Typed settings, read once at the edge (environment prefix ``FEDSTREAM_`` and CLI flags).

Every other module receives a :class:`Settings` (or the values it needs); none reads the
environment itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from topics import chat_tenants

if TYPE_CHECKING:
    from app.kafka.security import KafkaIdentity

__all__ = ["Settings", "default_cache_dir", "default_data_dir"]

logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "fedstream"


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "fedstream"


def _names(csv: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in csv.split(",") if name.strip())


class Settings(BaseSettings):
    """All knobs of a fedstream deployment; ``FEDSTREAM_<NAME>`` overrides each."""

    model_config = SettingsConfigDict(env_prefix="FEDSTREAM_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        "", description="Kafka bootstrap servers; empty = the local broker on kafka_port"
    )
    kafka_principal: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="the Kafka principal this command acts as (empty: the command's own, "
        "usually admin); its client config is <data_dir>/kafka/clients/<principal>.conf",
    )
    kafka_config: Path | None = Field(
        None, description="a principal's Kafka client config file (another site's cluster)"
    )
    kafka_clients: Path | None = Field(
        None,
        description="directory of the principals' client configs "
        "(empty: <data_dir>/kafka/clients, the local broker's)",
    )
    kafka_insecure: bool = Field(
        False, description="run the local broker PLAINTEXT without ACLs (throwaway only)"
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="how long a command waits for the broker before it gives up"
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus /metrics port of a worker (0 = off)"
    )
    kafka_port: int = Field(9092, ge=1, le=65535, description="local broker client port")
    kafka_controller_port: int = Field(
        0, ge=0, le=65535, description="local KRaft controller port (0 = kafka_port + 1)"
    )
    kafka_version: str = Field("4.1.1", description="Apache Kafka version of the local broker")
    kafka_heap: str = Field("1g", description="heap of the local broker JVM (as Kafka's default)")
    silos: int = Field(3, ge=1, le=64, description="number of data silos (ids 0..silos-1)")
    input_partitions: int = Field(4, ge=1, le=256, description="partitions of input topics")
    data_dir: Path = Field(default_factory=default_data_dir, description="logs, state, reports")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="downloaded jars")
    superlink_port: int = Field(9500, ge=1, le=65535, description="Flower SuperLink port")
    supernode_base_port: int = Field(
        9600, ge=1, le=65535, description="first SuperNode API port (one per silo)"
    )
    model_name: str = Field("fraud-mlp", description="key of the global model on fl.model.global")
    batch_rows: int = Field(512, ge=1, description="micro-batch size in rows")
    batch_ms: int = Field(2000, ge=1, description="micro-batch max age in milliseconds")
    short_window_s: int = Field(3600, ge=60, description="tumbling window size, seconds")
    long_window_s: int = Field(86400, ge=60, description="hopping window size, seconds")
    hop_s: int = Field(3600, ge=60, description="hopping window step, seconds")
    event_max_ahead_s: float = Field(
        3600.0, ge=0, description="event times further ahead of the worker's clock go to the DLQ"
    )
    event_max_back_s: float = Field(
        30 * 365.25 * 86400, ge=0, description="event times further back go to the DLQ"
    )
    namespace: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_-]*$",
        description="prefix of every topic and of the worker group (isolated runs on one broker)",
    )
    operators: str = Field(
        "operator", description="comma-separated chatbot operator tenants (may ask about anyone)"
    )
    tenant: str = Field(
        "operator",
        description="the chatbot tenant `fedstream ask` acts as (silo-<id> or an operator)",
    )
    txn_attrs: str = Field(
        "", description="comma-separated Transaction.attrs that become txn.<name> features"
    )
    profile_attrs: str = Field(
        "", description="comma-separated Customer.attrs that become profile.<name> features"
    )

    @field_validator("data_dir", "cache_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return Path(value).expanduser()

    @field_validator("kafka_config", "kafka_clients")
    @classmethod
    def _expand_optional(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser()

    @property
    def silo_ids(self) -> tuple[int, ...]:
        return tuple(range(self.silos))

    @property
    def operator_names(self) -> tuple[str, ...]:
        return _names(self.operators)

    @property
    def chat_tenants(self) -> tuple[str, ...]:
        """Every chatbot tenant of the deployment: the operators and one per silo."""
        return chat_tenants(self.silo_ids, self.operator_names)

    @property
    def txn_attr_names(self) -> tuple[str, ...]:
        return _names(self.txn_attrs)

    @property
    def profile_attr_names(self) -> tuple[str, ...]:
        return _names(self.profile_attrs)

    @property
    def controller_port(self) -> int:
        return self.kafka_controller_port or self.kafka_port + 1

    @property
    def kafka_clients_dir(self) -> Path:
        """Where the principals' client config files live (the local broker's by default)."""
        return self.kafka_clients or Path(self.data_dir) / "kafka" / "clients"

    def kafka_identity(self, default: str = "admin") -> KafkaIdentity:
        """Who this process is on Kafka: ``kafka_config``, else the client config of
        ``kafka_principal`` (or ``default``) in :attr:`kafka_clients_dir`, else anonymous
        plaintext (an insecure broker).

        Raises
        ------
        ValueError
            When a principal was named but has no client config.
        """
        from app.kafka.security import PLAINTEXT, read_client_config

        if self.kafka_config is not None:
            return read_client_config(self.kafka_config)
        path = self.kafka_clients_dir / f"{self.kafka_principal or default}.conf"
        if path.exists():
            return read_client_config(path)
        if self.kafka_principal or path.with_name("admin.conf").exists():
            raise ValueError(
                f"no Kafka credentials for principal {path.stem!r} ({path} is missing); "
                "`fedstream topics apply` creates them, or name a file with --kafka-config"
            )
        return PLAINTEXT

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers clients should use."""
        return self.bootstrap_servers or f"127.0.0.1:{self.kafka_port}"
