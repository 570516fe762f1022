"""The one exception of bad input: :class:`InvalidRecord` (re-exported by validation)."""

from __future__ import annotations

import logging

__all__ = ["InvalidRecord"]

logger = logging.getLogger(__name__)


class InvalidRecord(ValueError):
    """A record that violates its contract; goes to the dead-letter topic.

    Parameters
    ----------
    reason : str
        Short human-readable reason.
    request_id : str or None
        For chat requests: the request id, when it could be read, so that the worker
        can still answer the requester with an error.
    """

    def __init__(self, reason: str, request_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id
