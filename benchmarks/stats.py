"""Counters and latency summaries gathered by the load client."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


def percentiles(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of ``values`` (seconds) scaled to ms by default."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)
    n = len(ordered)

    def pick(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))] * scale, 3)

    return {"n": n, "p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99),
            "max": round(ordered[-1] * scale, 3), "mean": round(sum(ordered) / n * scale, 3)}


@dataclass
class LoadStats:
    """Everything one client process counts during a workload."""

    sent: int = 0
    #: open-loop requests that were due in the window but could not be sent in it.
    unsent: int = 0
    replies: int = 0
    replies_in_window: int = 0
    idles: int = 0
    frames: int = 0
    bytes_in: int = 0
    by_type: Counter = field(default_factory=Counter)
    reply_latency: list[float] = field(default_factory=list)
    idle_latency: list[float] = field(default_factory=list)
    send_lag: list[float] = field(default_factory=list)
    dropped_ws: list[str] = field(default_factory=list)
    dead_kernels: set[str] = field(default_factory=set)
    decode_errors: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready summary (latency lists reduced to percentiles)."""
        return {
            "sent": self.sent, "unsent": self.unsent, "replies": self.replies, "replies_in_window": self.replies_in_window,
            "idles": self.idles, "frames": self.frames, "bytes_in": self.bytes_in,
            "frames_by_type": dict(self.by_type),
            "reply_latency_ms": percentiles(self.reply_latency),
            "idle_latency_ms": percentiles(self.idle_latency),
            "send_lag_ms": percentiles(self.send_lag),
            "dropped_ws": len(self.dropped_ws), "dropped_ws_reasons": self.dropped_ws[:10],
            "dead_kernels": len(self.dead_kernels), "decode_errors": self.decode_errors,
            "errors": self.errors[:20],
        }
