"""``import fedstream as fs``: the pipeline API (:mod:`app.pipeline`) under its product name."""

from app.pipeline import *  # noqa: F403
from app.pipeline import __all__ as __all__
