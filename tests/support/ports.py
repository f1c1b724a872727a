"""Free TCP ports on 127.0.0.1 for the servers tests start.

Ports are drawn from 5000-9999, below Linux's ephemeral range (32768-60999
by default) and below the range the server starts kernels on (10000 up to
the ephemeral range), not by binding port 0: a port handed out for port 0
can come back on the next call or be taken a moment later as the source port
of an outgoing connection (CI once saw the hub's port equal the proxy's API
port that way).  The server's own `PortPicker` does the drawing, so no port
is handed out twice in a test run.  Ports browsers and Node's `fetch` refuse
(6667 and others in this range) are never handed out: a server there passes
curl but fails every browser and JupyterLab-client test (CI once drew 6667).
"""

from __future__ import annotations

import random

from zasperhub.platform.browser_ports import BLOCKED
from zasperhub.platform.kernels.ports import PortPicker

_picker = PortPicker(5000, 9999, avoid=BLOCKED)
_rng = random.Random()


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and not handed out before in this run."""
    return _picker.pick(1)[0]


def free_port_block(size: int, offsets: tuple[int, ...] = (0,)) -> int:
    """A base port P such that P+i (+ each offset) is free for i < size."""
    for _ in range(1000):
        base = _rng.randrange(5000, 10000 - size)
        ports = [base + i + off for i in range(size) for off in offsets]
        if max(ports) < 65536 and _picker.take(ports):
            return base
    raise RuntimeError("no free port block found")
