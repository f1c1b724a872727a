"""The read gate's deadline, set and cleared for every request without a timer object.

Why: the read gate (coalesce.py) sets a deadline for every request sent to a
kernel and clears it when the answer comes a few milliseconds later.  As an
asyncio `TimerHandle` that is a new handle, a push onto the loop's timer
heap, a cancel and a later pop, about fifteen Python calls per round trip;
a Linux timer descriptor instead costs two `timerfd_settime` calls, which
measured no cheaper.  This form measured 4–5 % less server CPU per round
trip than the asyncio timer at 2 kernels × 10/s, two servers side by side
under the same load (benchmarks/results/cpu.md, session 14).

How: the server's event loop (server_loop.ServerLoop) has a selector that knows
one deadline.  Setting or clearing it is an attribute store; when the loop
is about to wait, the selector shortens the wait to the deadline, and when
the wait ends past it, the callback is queued to run in that same pass of
the loop.  The loop's own timers are untouched.

Any other loop (a test's, uvloop), or a second deadline on the same loop,
gets the same interface as an asyncio timer.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Callable

_monotonic = time.monotonic


class Deadline:
    """Calls `callback()` once, on the loop, when loop time reaches what was last given to `arm`.

    `arm` again moves the deadline; `disarm` cancels it.  The callback never
    runs after a `disarm`, nor for a time that was replaced.
    """

    def arm(self, when: float) -> None:
        """Fire at loop time `when` (replaces an earlier deadline)."""
        raise NotImplementedError

    def disarm(self) -> None:
        """Do not fire (idempotent)."""
        raise NotImplementedError

    def close(self) -> None:
        """Disarm for good and give back what the deadline holds (idempotent)."""
        raise NotImplementedError


class DeadlineSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """The platform's selector, with one deadline (on `time.monotonic`) its waits end by."""

    def __init__(self) -> None:
        super().__init__()
        #: When the deadline falls due (monotonic seconds), or None.
        self.due: float | None = None
        self.owner: _SelectorDeadline | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        due = self.due
        if due is None:
            return super().select(timeout)
        wait = due - _monotonic()
        if timeout is None or wait < timeout:
            timeout = wait if wait > 0 else 0
        ready = super().select(timeout)
        if _monotonic() >= due and self.owner is not None:
            self.due = None
            # Queued, not called: it runs with this pass's other callbacks, outside select.
            self.owner.fire_soon()
        return ready


class _SelectorDeadline(Deadline):
    """The deadline the server loop's selector carries (on the loop's clock, `time.monotonic`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, selector: DeadlineSelector,
                 callback: Callable[[], None]) -> None:
        self._loop = loop
        self._selector: DeadlineSelector | None = selector
        self._callback = callback
        # Set when the selector saw the deadline pass; an arm or disarm before the queued call runs clears it.
        self._fired = False
        selector.owner = self

    def arm(self, when: float) -> None:
        if self._selector is not None:
            self._selector.due = when
            self._fired = False

    def disarm(self) -> None:
        if self._selector is not None:
            self._selector.due = None
            self._fired = False

    def close(self) -> None:
        selector, self._selector = self._selector, None
        if selector is not None:
            selector.due = None
            selector.owner = None
        self._fired = False

    def fire_soon(self) -> None:
        self._fired = True
        self._loop.call_soon(self._fire)

    def _fire(self) -> None:
        if self._fired and self._selector is not None:
            self._fired = False
            self._callback()


class _TimerHandleDeadline(Deadline):
    """The portable form: an asyncio timer per `arm`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(when, self._fire)

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    close = disarm

    def _fire(self) -> None:
        self._handle = None
        self._callback()


def make_deadline(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Deadline:
    """The selector's deadline on the server's loop (one per loop), else an asyncio timer.

    The server's loop (server_loop.ServerLoop) carries its `DeadlineSelector`
    as `deadline_selector`, and its clock is `time.monotonic`, the clock the
    selector keeps the deadline on.
    """
    selector = getattr(loop, "deadline_selector", None)
    if isinstance(selector, DeadlineSelector) and selector.owner is None:
        return _SelectorDeadline(loop, selector, callback)
    return _TimerHandleDeadline(loop, callback)
