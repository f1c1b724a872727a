"""Free TCP ports on 127.0.0.1 for the servers tests start.

Ports are drawn from 5000-9999, below Linux's ephemeral range (32768-60999
by default) and below the range the server starts kernels on (10000 up to
the ephemeral range, platform/kernels/ports.py), not by binding port 0. A port the kernel hands out for port 0 is an ephemeral
port, and the same number can come back on the next call or be taken a moment
later as the source port of some outgoing connection; CI once saw the hub's
port equal the proxy's API port that way. Ports below the range are never
picked as source ports, and this module never hands the same port out twice
in one test run.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 5000, 10000
_issued: set[int] = set()
_rng = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _take(ports: list[int]) -> bool:
    if any(p in _issued or p >= 65535 for p in ports) or not all(_bindable(p) for p in ports):
        return False
    _issued.update(ports)
    return True


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and not handed out before in this run."""
    for _ in range(1000):
        port = _rng.randrange(_LOW, _HIGH)
        if _take([port]):
            return port
    raise RuntimeError("no free port found")


def free_port_block(size: int, offsets: tuple[int, ...] = (0,)) -> int:
    """A base port P such that P+i (+ each offset) is free for i < size."""
    for _ in range(1000):
        base = _rng.randrange(_LOW, _HIGH)
        if _take([base + i + off for i in range(size) for off in offsets]):
            return base
    raise RuntimeError("no free port block found")
