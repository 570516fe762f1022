"""The CLI starts without JAX, Flower or Faust, and JAX's TPU probe does not reach the logs.

Each check runs a fresh interpreter: what a module imports at start only shows in a process
that has imported nothing else yet.
"""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("jax", "flax", "optax", "flwr", "faust")


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_every_command_registers_without_heavy_imports() -> None:
    # Execute: what `fedstream --help` (and every command before its body runs) imports
    code = (
        "import sys, app.cli\n"
        "app.cli._register_optional()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = _run(code)

    # Assert
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"imported at CLI start: {result.stdout.strip()}"


def test_help_lists_every_command_group() -> None:
    result = _run("import sys\nsys.argv = ['fedstream', '--help']\nimport app.cli\napp.cli.main()")
    assert result.returncode == 0, result.stderr
    for command in ("status", "exporter", "worker", "fl", "demo", "bench", "ask", "produce"):
        assert command in result.stdout


def test_jax_backend_probe_is_quiet_at_info() -> None:
    # Prepare: a process logging at INFO, like the ServerApp, a ClientApp or a silo runtime
    code = (
        "import logging\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "import numpy as np\n"
        "from app.model.config import ModelConfig\n"
        "from app.model.params import init_arrays\n"
        "import jax\n"
        "print(jax.default_backend(), len(init_arrays(ModelConfig(n_features=4))))\n"
    )
    # Execute
    result = _run(code)

    # Assert: JAX chose its backend (the probe ran), and said nothing about a TPU
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "cpu"
    assert "Unable to initialize backend" not in result.stderr, result.stderr
    assert "tpu" not in result.stderr.lower()
