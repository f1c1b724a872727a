"""TCP ports for local kernels, picked below the system's ephemeral port range.

jupyter_client picks a kernel's five ports by binding port 0 and closing the
socket; the kernel binds them a moment later.  Port 0 hands out *ephemeral*
ports, the same pool the system draws from for the source port of every
outgoing connection.  In the gap, any process's connect (the server's own
connections to other kernels included) can take one of them as its source
port, and the kernel then fails to bind it.  An ipykernel that loses its
iopub port that way never exits (see tests/kernels/test_zmtp_ports.py), and
a connect retried against a port nobody listens on yet can connect to itself.

Ports below the ephemeral range are never chosen as source ports, so a kernel
launched on them can only lose one to a process that binds that very number
explicitly.  The picker draws at random (so several servers on one host
rarely try the same port), checks that the port can be bound, and does not
hand a port out twice while it may still be in use by a kernel it started.
"""

from __future__ import annotations

import collections
import random
import socket
import sys
from typing import Any

from zasperhub.platform.kernels.zmqio import tcp_host

#: Ports handed out recently, never handed out again while listed (five per kernel).
_RECENT = 4096
#: The lowest port ever used (well-known and registered ports below are left alone).
_FLOOR = 10000


def ephemeral_range() -> tuple[int, int]:
    """The system's ephemeral port range (inclusive), from the kernel where it says."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
                low, high = (int(x) for x in f.read().split()[:2])
            return low, high
        except (OSError, ValueError):
            return 32768, 60999
    return 49152, 65535  # the IANA range, used by macOS and Windows


def parse_range(spec: str) -> tuple[int, int] | None:
    """'LOW-HIGH' → (low, high); '' → the default below the ephemeral range.

    None (jupyter_client picks the ports) for 'ephemeral', or when the
    ephemeral range starts too low to leave a range below it.
    """
    spec = spec.strip()
    if spec == "ephemeral":
        return None
    if spec:
        try:
            low_s, high_s = spec.split("-", 1)
            low, high = int(low_s), int(high_s)
        except ValueError:
            raise ValueError(f"kernel port range must look like LOW-HIGH, not {spec!r}") from None
        if not 1024 <= low < high <= 65535 or high - low < 100:
            raise ValueError(f"kernel port range {spec!r} must lie within 1024-65535 and span at least 100 ports")
        return low, high
    eph_low, _ = ephemeral_range()
    high = eph_low - 1
    if high - _FLOOR < 1000:
        return None  # the ephemeral range starts too low to leave room: keep jupyter_client's picks
    return _FLOOR, high


class PortPicker:
    """Random free ports from one range, none handed out twice while recent."""

    def __init__(self, low: int, high: int, rng: random.Random | None = None,
                 avoid: frozenset[int] = frozenset()) -> None:
        self.low = low
        self.high = high
        self.avoid = avoid  # never handed out, e.g. ports browsers refuse
        self._rng = rng or random.Random()
        self._recent: collections.deque[int] = collections.deque(maxlen=_RECENT)
        self._recent_set: set[int] = set()

    def take(self, ports: list[int], ip: str = "127.0.0.1") -> bool:
        """Hand out all of `ports` if each is free on `ip` now, none is recent or avoided (else none of them)."""
        if any(p in self._recent_set or p in self.avoid for p in ports) or not all(self._bindable(ip, p) for p in ports):
            return False
        for port in ports:
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(port)
            self._recent_set.add(port)
        return True

    @staticmethod
    def _bindable(ip: str, port: int) -> bool:
        with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, port))
            except OSError:
                return False
        return True

    def pick(self, count: int, ip: str = "127.0.0.1") -> list[int]:
        """`count` distinct ports free on `ip` right now; `OSError` if the range has none left."""
        ports: list[int] = []
        for _ in range(count * 200):
            port = self._rng.randint(self.low, self.high)
            if port not in ports and self.take([port], ip):
                ports.append(port)
                if len(ports) == count:
                    return ports
        raise OSError(f"no free ports left in {self.low}-{self.high} on {ip}")


def make_picker(spec: str) -> PortPicker | None:
    """The picker for a `kernel_port_range` setting (None: jupyter_client picks); `ValueError` if malformed."""
    bounds = parse_range(spec)
    return PortPicker(*bounds) if bounds is not None else None


#: The channels of a kernel's connection file, in jupyter_client's order.
CHANNEL_PORTS = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")


def assign(manager: Any, picker: PortPicker) -> bool:
    """Give a tcp kernel manager whose ports are unset ports from `picker` (True if it did).

    jupyter_client is told not to pick (`cache_ports` off), so its local
    provisioner writes these into the connection file as they are.
    """
    if getattr(manager, "transport", "tcp") != "tcp":
        return False
    if any(getattr(manager, name, 0) for name in CHANNEL_PORTS):
        return False  # ports already chosen (a restart keeps them)
    ports = picker.pick(len(CHANNEL_PORTS), tcp_host({"ip": getattr(manager, "ip", "")}))
    for name, port in zip(CHANNEL_PORTS, ports):
        setattr(manager, name, port)
    manager.cache_ports = False
    return True


def forget(manager: Any) -> None:
    """Have a tcp kernel manager's next launch use new ports (and write a new connection file)."""
    if getattr(manager, "transport", "tcp") != "tcp":
        return
    # jupyter_client's LocalProvisioner picks ports once and reuses them on
    # restarts unless told they are no longer cached.
    if getattr(manager.provisioner, "ports_cached", False):
        manager.provisioner.ports_cached = False
    for name in CHANNEL_PORTS:
        setattr(manager, name, 0)
    manager.cleanup_connection_file()
