"""Where the tests find ``shared/`` (the UCI credit-default CSV lives in ``shared/data``).

``shared/`` sits next to the repository, not in it. A clone made elsewhere from a local
checkout (``git clone . /tmp/x/c``, as the README suggests for checking CI) has no
``shared/`` beside it, so its origin's neighbour is tried too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from app.produce.uci import find_uci_csv

__all__ = ["REPO", "find_shared_uci_csv", "shared_dirs"]

REPO = Path(__file__).resolve().parents[1]


def shared_dirs() -> list[Path]:
    """Candidate ``shared/`` directories: beside the repo, inside it, beside its origin."""
    dirs = [REPO.parent / "shared", REPO / "shared"]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "remote", "get-url", "origin"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():  # a clone of a local checkout
        dirs.append(Path(origin).resolve().parent / "shared")
    return dirs


def find_shared_uci_csv() -> Path | None:
    return find_uci_csv(*shared_dirs())
