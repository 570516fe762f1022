"""One leg of ``bench chat --against REV``, run as a script in its own process.

The measurement is this tree's (:func:`bench.chat.run_bench`: warm-up until the worker
keeps up, the same load, chat rate, phases and figures); everything it drives (the
``fedstream worker``, the chat client, the topic catalogue, the model frame) is whatever
``app`` and ``topics`` resolve to: another revision's tree when it is first on
``PYTHONPATH`` (:mod:`bench.chat_against`), this one otherwise. This tree's ``bench``
modules are loaded from their files, so another revision's ``bench`` package (which may
lack them) is never used. Writes the result and every reply latency to ``--out`` as JSON.

    python bench/chat_leg.py --bootstrap HOST:PORT --out FILE [--rate R --chat-rate C
        --seconds S --customers N --silos K]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["load_bench_chat", "main"]

HERE = Path(__file__).resolve().parent


def _load(name: str, file: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_bench_chat() -> ModuleType:
    """This tree's ``bench/chat.py``, beside whatever ``app`` resolves to."""
    from app.kafka import clients

    if not hasattr(clients, "produce_when_room"):  # REV predates the load generator's helper
        room = _load("fedstream_bench_room", "../app/kafka/room.py")  # needs nothing of REV
        clients.produce_when_room = room.produce_when_room
    _load("bench.cpu", "cpu.py")  # `from bench.cpu import ...` finds it in sys.modules
    _load("bench.options", "options.py")
    return _load("fedstream_bench_chat_leg", "chat.py")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--chat-rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--silos", type=int, default=3)
    args = parser.parse_args(argv)

    from app.settings import Settings

    settings = Settings(**{"bootstrap_servers": args.bootstrap, "silos": args.silos})
    if hasattr(settings, "kafka_identity"):  # a revision with Kafka security: act as admin
        from app.kafka.security import use

        use(settings.kafka_identity("admin"))
    chat = load_bench_chat()
    samples: dict[str, list[float]] = {}
    result = chat.run_bench(
        settings, args.rate, args.chat_rate, args.seconds, args.customers, samples
    )
    args.out.write_text(json.dumps({"result": result, "samples": samples}))


if __name__ == "__main__":
    sys.path.pop(0)  # this script's directory: its modules must not shadow top-level names
    # stopped by the harness: unwind, so the worker subprocess is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
