"""Free TCP ports on 127.0.0.1."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int, offsets: tuple[int, ...] = (0,)) -> int:
    """A base port P such that P+i (+ each offset) is free for i < size."""
    for _ in range(200):
        base = free_port()
        ports = [base + i + off for i in range(size) for off in offsets]
        if max(ports) >= 65535:
            continue
        ok = True
        for p in ports:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block found")
