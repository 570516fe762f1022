"""The state of a local Flower deployment (``<data_dir>/fl/state.json``) and its errors.

``fl up`` writes it, the supervisor (app/fl/supervisor.py) keeps it current, ``fl status``,
``fl down`` and the tests read it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FLDeployment", "FLError"]

logger = logging.getLogger(__name__)


class FLError(RuntimeError):
    """A problem the user can act on; the message is one clear sentence."""


@dataclass
class FLDeployment:
    """What ``fl up`` started (persisted as ``state.json``)."""

    data_dir: str
    bootstrap: str
    model_name: str
    superlink_port: int
    superlink_pid: int
    # silo -> pid, port (and runtime_pid: its warm ClientApp runtime, app/fl/warm_runtime.py;
    # restarts, last_restart: written by the supervisor, app/fl/supervisor.py)
    supernodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    secure: bool = True  # TLS + SuperNode authentication (False: `fl up --insecure`)
    warm: bool = True
    commands: dict[str, list[str]] = field(default_factory=dict)  # how to restart each
    supervisor_pid: int = 0
    kafka_clients: str = ""  # the principals' Kafka client configs ("" = plaintext Kafka)

    @property
    def root(self) -> Path:
        return Path(self.data_dir) / "fl"

    def pids(self) -> dict[str, int]:
        out = {"superlink": self.superlink_pid}
        if self.supervisor_pid:
            out["supervisor"] = self.supervisor_pid
        for silo, node in self.supernodes.items():
            out[f"supernode-{silo}"] = node["pid"]
            if "runtime_pid" in node:
                out[f"runtime-{silo}"] = node["runtime_pid"]
        return out

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # Atomic: `up` and the supervisor read it while the other writes (a plain write_text
        # let a reader see an empty file: JSONDecodeError in `fl up` under load).
        tmp = self.root / f"state.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2))
        os.replace(tmp, self.root / "state.json")

    @classmethod
    def load(cls, data_dir: Path) -> FLDeployment | None:
        path = Path(data_dir) / "fl" / "state.json"
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))
