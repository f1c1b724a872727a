"""Execution admission: how many idle kernels may start executing at once.

Why.  With more busy kernels than cores, ipykernels get slower per request,
not just slower in turn: each execute wakes four threads per kernel (shell
channel, main, IOPub, libzmq I/O), and with 64 kernels' threads runnable on
2 cores every wake-up lands on a cold cache.  Measured with no server at all
(`benchmarks.kernel_capacity`, 64 kernels x 10 executes/s): fed as requests
fall due, the kernels spend 6.0-6.6 ms of CPU per reply and answer 280-330
per second; fed so that at most 4-12 kernels have work at a time, each
getting its due requests in one batch, 2.5-2.9 ms and 595 per second.
Jupyter Server gets part of that effect by accident (it is slow to forward,
so requests reach kernels in bursts); this module gets it on purpose.

Policy (what a client can observe; the kernel side is in kernel.py):

* An idle kernel needs a slot to start an `execute_request`.  With every
  slot taken, that request and every later shell message for the kernel
  wait in the server, in order.
* An `execute_request` for a kernel that is still executing earlier ones
  waits in the server too (with what follows it), until the kernel has
  answered them all; then everything waiting goes to the kernel in one
  batch (the batching is half of the gain at 16 kernels x 100/s).
* When a cell fails, the execute_requests waiting behind it are answered
  `aborted` (busy, reply, idle), exactly as ipykernel answers the ones in
  its own queue (`stop_on_error`), so a "run all" still stops at the first
  error.  Other shell messages waiting (completions, inspections) are sent.
* A slot is freed when its kernel has answered every execute_request it was
  sent, or after `hold_s` even if it has not: a long-running cell keeps
  running but stops counting, so it never blocks other kernels for longer.
* Control (interrupt, shutdown), stdin and subshell messages (header
  `subshell_id`) never wait.

With one cell at a time per kernel and fewer busy kernels than slots (every
workload that does not saturate the machine) nothing waits.  Under overload
(more than `max_queued` messages waiting in all, about 1 KB each), a kernel
that would add to the queue sends everything on to its own queue instead,
as without admission, until it has caught up: the server's memory stays
bounded and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Protocol


class Admitted(Protocol):
    """A kernel as admission sees it."""

    def admit(self) -> bool:
        """Send everything waiting for a slot; True if the kernel now has work in flight."""
        ...


class Admission:
    """At most `limit` kernels hold a slot; kernels waiting for one are served first come, first served."""

    def __init__(self, limit: int, hold_s: float = 1.0, max_queued: int = 32768) -> None:
        self.limit = limit
        self.hold_s = hold_s
        #: Shell messages waiting in all kernels together (kept by the kernels), and the
        #: most there may be: beyond it a kernel sends what it has on (about 1 KB each).
        self.queued = 0
        self.max_queued = max_queued
        self._slots: dict[Admitted, float] = {}  # kernel -> loop time it took the slot
        self._waiting: collections.deque[Admitted] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> int:
        """Slots taken now."""
        return len(self._slots)

    @property
    def waiting(self) -> int:
        """Kernels waiting for a slot."""
        return len(self._waiting)

    def try_acquire(self, kernel: Admitted) -> bool:
        """Take a slot for `kernel` if one is free (True), else False: the caller queues and calls `wait`."""
        if kernel in self._slots:
            return True
        if len(self._slots) >= self.limit or self._waiting:
            return False  # full, or others were first
        self._slots[kernel] = asyncio.get_running_loop().time()
        return True

    def wait(self, kernel: Admitted) -> None:
        """Queue `kernel` for the next free slot (idempotent); `kernel.admit()` is called then."""
        if kernel not in self._waiting:
            self._waiting.append(kernel)
        self._dispatch()

    def release(self, kernel: Admitted) -> None:
        """`kernel` has nothing in flight any more: free its slot, if it still had one."""
        if self._slots.pop(kernel, None) is not None:
            self._dispatch()

    def forget(self, kernel: Admitted) -> None:
        """`kernel` restarted, died or shut down: free its slot and its place in the queue."""
        try:
            self._waiting.remove(kernel)
        except ValueError:
            pass
        self.release(kernel)

    def close(self) -> None:
        """Stop the expiry timer (server shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _dispatch(self) -> None:
        while self._waiting and len(self._slots) < self.limit:
            kernel = self._waiting.popleft()
            self._slots[kernel] = asyncio.get_running_loop().time()
            if not kernel.admit():
                del self._slots[kernel]  # nothing of it is in flight: the slot is free again
        if self._waiting and self._timer is None:
            # Everyone holds a slot and nobody may ever answer (long cells):
            # the oldest slot expires after hold_s.
            loop = asyncio.get_running_loop()
            due = min(self._slots.values()) + self.hold_s if self._slots else loop.time()
            self._timer = loop.call_at(due, self._expire)

    def _expire(self) -> None:
        self._timer = None
        cutoff = asyncio.get_running_loop().time() - self.hold_s
        for kernel, since in list(self._slots.items()):
            if since <= cutoff:
                del self._slots[kernel]  # still executing; it just stops counting
        self._dispatch()
