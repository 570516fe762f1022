"""app.ports on real sockets."""

from __future__ import annotations

import socket

from app.ports import free_port, port_free


def test_a_listener_makes_its_port_busy_and_free_port_skips_it() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        busy = int(listener.getsockname()[1])
        assert not port_free(busy)
        base = free_port(span=3)
        assert all(port_free(base + i) for i in range(3))
        assert busy not in range(base, base + 3)
    assert port_free(busy)
