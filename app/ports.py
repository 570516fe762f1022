"""Is a local TCP port free to listen on? (the broker and Flower launchers ask)."""

from __future__ import annotations

import socket

__all__ = ["port_free"]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``.

    SO_REUSEADDR as servers use it: connections of a just-stopped process that linger in
    TIME_WAIT do not make the port busy, only a listener does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
