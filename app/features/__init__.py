"""Pure feature code: records, validation, windows, vectorisation, frames, routing.

Nothing here imports faust, flwr or confluent_kafka. The stream worker, the chatbot, the
offline reference pipeline and the centralised baseline all call these functions, so each
feature has exactly one definition.
"""

from __future__ import annotations

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)
