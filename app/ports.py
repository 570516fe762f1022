"""Local TCP ports: is one free to listen on, and find free ones (launchers, tests, benches)."""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_free"]


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


def free_port(span: int = 1, host: str = "127.0.0.1") -> int:
    """A port p that the OS offers as free, with p .. p + span - 1 all free.

    ``span`` > 1 for launchers that take consecutive ports (SuperNodes: base + silo index).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port + span < 65536 and all(port_free(port + i, host) for i in range(1, span)):
            return port
    raise RuntimeError(f"no {span} consecutive free ports on {host}")
