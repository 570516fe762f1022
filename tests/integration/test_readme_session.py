"""The README's "session by hand", run as written (bash, from the repository root).

Its own `fedstream kafka start` is the broker of this test: a real Kafka in a temporary
data directory on free ports (the environment points every port of the session there, so
nothing collides with other brokers or Flower deployments on the machine).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from app.ports import free_port
from app.settings import default_cache_dir

REPO = Path(__file__).resolve().parents[2]
MARKER = "<!-- readme-session -->"


def readme_session() -> str:
    """The bash block right after the marker in README.md."""
    text = (REPO / "README.md").read_text()
    after = text.split(MARKER, 1)[1]
    block = after.split("```bash\n", 1)[1].split("```", 1)[0]
    return block


def test_readme_session_runs_as_written(tmp_path: Path) -> None:
    # Prepare
    script = tmp_path / "session.sh"
    script.write_text(readme_session())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSTREAM_")}
    env.update(
        FEDSTREAM_DATA_DIR=str(tmp_path / "data"),
        FEDSTREAM_CACHE_DIR=os.environ.get("FEDSTREAM_CACHE_DIR", str(default_cache_dir())),
        FEDSTREAM_KAFKA_PORT=str(free_port()),
        FEDSTREAM_KAFKA_CONTROLLER_PORT=str(free_port()),
        FEDSTREAM_SUPERLINK_PORT=str(free_port()),
        FEDSTREAM_SUPERNODE_BASE_PORT=str(free_port(span=3)),
        FEDSTREAM_KAFKA_HEAP="512m",
    )

    # Execute
    try:
        proc = subprocess.run(["bash", "-e", str(script)], cwd=REPO, env=env, text=True,
                              capture_output=True, timeout=900, check=False)  # fmt: skip
    finally:  # whatever happened, nothing the session started stays up
        subprocess.run([str(REPO / ".venv/bin/fedstream"), "fl", "down"], env=env,
                       capture_output=True, check=False, timeout=120)  # fmt: skip
        subprocess.run([str(REPO / ".venv/bin/fedstream"), "kafka", "stop"], env=env,
                       capture_output=True, check=False, timeout=120)  # fmt: skip
    out = proc.stdout + proc.stderr

    # Assert
    assert proc.returncode == 0, out[-4000:]
    assert "drained: 20,0" in out  # 20,000 events + 20 invalid, all processed
    assert out.count("batch frame: silo 0") == 3
    assert "lag 0 (drained)" in out and "dlq.bank.transactions" in out
    assert "federated training up" in out and "Kafka stopped." in out
