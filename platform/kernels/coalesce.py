"""Read a kernel's burst of outputs in one wake-up instead of one per message.

One `2+2` round trip makes the kernel send five messages spread over a few
milliseconds (measured here: iopub busy at ~3.4 ms after the request,
execute_input ~4.2, execute_result ~5.3, the shell execute_reply ~6.9 and
iopub idle ~7.4).  Read as they arrive, each costs the server a wake-up of
its event loop, and on this kind of machine a wake-up (a context switch and
a cold cache) costs 100–200 µs of CPU however little Python runs in it
(benchmarks/results/cpu.md).  That, not the Python per message, is most of
the server's CPU per round trip.

So a kernel's **iopub** socket is *held* (not read) while a request is
outstanding, and read in one go when the kernel's answer arrives on another
channel — the execute_reply on shell, an input_request on stdin, a control
reply.  The transport then reads the held outputs *before* that answer, so
clients see the kernel's order.  The shell/stdin/control sockets are never
held: replies and prompts are delivered the moment they arrive, so holding
adds no latency to what clients wait for.  A request whose answer takes
longer than `reply_window` (a long cell) gets its outputs released then.

For `output_window` after a release, iopub reads are not held (the final
`idle` a moment after the reply is delivered at once); after that, output
nobody asked for (a running cell printing) is held for `output_window` per
read, so a chatty cell costs one wake-up per window, not one per line.

One deadline serves every held kernel, and a release that comes early (the
reply arrived) moves it, so an early release never leaves a timer to fire
for nothing.  On the server's own loop it is carried by the selector, not
an asyncio timer (deadline.py says why).

Both kernel transports derive from `Holdable`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from zasperhub.platform.kernels.deadline import Deadline, make_deadline


class Holdable:
    """What the gate keeps on a kernel's sockets; both kernel transports derive from it."""

    def __init__(self, gate: ReadGate | None = None) -> None:
        self.gate = gate
        self.closed = False
        # While held, iopub is not read (the kernel's outputs wait in the socket buffers).
        self.held = False
        # True while the outputs are released because an answer arrived: the
        # transport then flushes them to clients together with that answer.
        self.answering = False
        # Bumped by every hold and release: a queued deadline with an older token is stale.
        self.hold_token = 0
        # Until then iopub reads are not held again (the burst's late idle passes at once).
        self.free_until = 0.0

    def answer_arrived(self) -> None:
        """The kernel answered on shell/stdin/control: read its held outputs now, before the answer."""
        if self.held and self.gate is not None:
            self.answering = True
            try:
                self.gate.answer_arrived(self)
            finally:
                self.answering = False

    def hold(self) -> None:
        """Stop reading iopub."""
        raise NotImplementedError

    def release(self) -> None:
        """Read the iopub messages that waited, at once, then read iopub as it arrives again.

        Unless `answering`, the transport also flushes them to clients.
        """
        raise NotImplementedError


#: Default seconds output nobody asked for is held per read (and the free time after a release).
OUTPUT_WINDOW = 0.002


class ReadGate:
    """Holds kernels' iopub reads; one gate (and one deadline) per kernel registry."""

    def __init__(self, reply_window: float, output_window: float = OUTPUT_WINDOW) -> None:
        self.reply_window = reply_window
        self.output_window = min(output_window, reply_window)
        self._loop: asyncio.AbstractEventLoop | None = None
        # (release time, sequence, sockets, hold token); entries whose token no
        # longer matches were released early and are skipped.
        self._heap: list[tuple[float, int, Holdable, int]] = []
        self._seq = itertools.count()
        self._clock: Callable[[], float] | None = None
        # The one deadline (deadline.py) and when it is set to fall due (None: not set).
        self._deadline: Deadline | None = None
        self._due: float | None = None

    def hold_for_reply(self, sockets: Holdable) -> None:
        """A request just went to the kernel: hold its outputs until the answer comes."""
        if self.reply_window > 0 and not sockets.held and not sockets.closed:
            self._hold(sockets, self.reply_window)

    def after_output(self, sockets: Holdable) -> None:
        """iopub messages were just read unheld: hold for the rest of the burst, unless just released."""
        if self.output_window > 0 and not sockets.held and not sockets.closed:
            if self._now() >= sockets.free_until:
                self._hold(sockets, self.output_window)

    def answer_arrived(self, sockets: Holdable) -> None:
        """The kernel answered on shell/stdin/control: release its held outputs now, first."""
        if sockets.held:
            self._release(sockets, self._now())
            self._reschedule()

    def _now(self) -> float:
        clock = self._clock
        if clock is None:
            self._loop = asyncio.get_running_loop()
            # On the server's loop this is time.monotonic itself (server_loop.ServerLoop).
            clock = self._clock = self._loop.time
        return clock()

    def _hold(self, sockets: Holdable, duration: float) -> None:
        sockets.hold_token += 1
        sockets.hold()
        when = self._now() + duration
        heapq.heappush(self._heap, (when, next(self._seq), sockets, sockets.hold_token))
        if self._due is None or when < self._due:
            self._schedule(when)

    def _release(self, sockets: Holdable, now: float) -> None:
        sockets.hold_token += 1  # its heap entry is now stale
        sockets.free_until = now + self.output_window
        if not sockets.closed:
            sockets.release()
        else:
            sockets.held = False

    def _schedule(self, when: float) -> None:
        deadline = self._deadline
        if deadline is None:
            assert self._loop is not None
            deadline = self._deadline = make_deadline(self._loop, self._release_due)
        deadline.arm(when)
        self._due = when

    def _reschedule(self) -> None:
        """Point the deadline at the earliest live hold (a cleared deadline never wakes the loop)."""
        heap = self._heap
        while heap and heap[0][3] != heap[0][2].hold_token:
            heapq.heappop(heap)
        if not heap:
            if self._due is not None:
                assert self._deadline is not None
                self._deadline.disarm()
                self._due = None
        elif heap[0][0] != self._due:
            self._schedule(heap[0][0])

    def _release_due(self) -> None:
        self._due = None
        now = self._now()
        # Also what falls due within half an output window: holds ending close
        # together share one wake-up.
        horizon = now + self.output_window / 2
        heap = self._heap
        while heap and heap[0][0] <= horizon:
            _, _, sockets, token = heapq.heappop(heap)
            if token == sockets.hold_token:
                self._release(sockets, now)
        self._reschedule()

    def close(self) -> None:
        """Release everything held and stop the deadline (server shutdown)."""
        if self._deadline is not None:
            self._deadline.close()
            self._deadline = None
        self._due = None
        heap, self._heap = self._heap, []
        now = self._clock() if self._clock is not None else 0.0
        for _, _, sockets, token in heap:
            if token == sockets.hold_token:
                self._release(sockets, now)
