"""The server's event loop: asyncio's selector loop, with its clock, its deadline and its pass made lean.

Why: at a few requests a second per kernel every message wakes the server
from sleep, so each pass of the loop runs on a cold cache and its cost is
roughly its count of Python calls.  asyncio's pass (`_run_once`, the
selector's `select`, `_process_events`, `_add_callback`, `Handle._run`)
makes about twenty of them per wake-up, and a round trip at 2 kernels ×
10/s is three wake-ups: about a third of the server's Python calls per
round trip (benchmarks/results/cpu.md, session 15).

`ServerLoop` differs from `asyncio.SelectorEventLoop` in three ways:

* its clock is `time.monotonic` called directly, not through a method;
* its selector carries the read gate's deadline (kernels/deadline.py);
* on Linux's epoll, one pass is written out here for the common case: the
  wait, the events turned into ready callbacks and the callbacks run, in
  one Python frame and with the same steps, in the same order, as
  asyncio's.  In debug mode (slow-callback warnings), on other selectors,
  on Pythons outside 3.11–3.13, or with `ZASPERHUB_LEAN_LOOP=0`, asyncio's
  own pass runs instead.  (It was written against 3.11's asyncio and read
  against CPython main's, whose pass takes the same steps; the tests run it
  on 3.11 next to asyncio's and compare.)

Measured: 201 → 171 Python calls per round trip at 2 kernels × 10/s, and
asyncio's pass costing 1.06–1.08× this one in server CPU, two servers side
by side under the same load (benchmarks/results/s15-ab).
"""

from __future__ import annotations

import asyncio
import heapq
import os
import select
import selectors
import sys
import time
from asyncio import format_helpers
from collections.abc import Coroutine
from typing import Any, TypeVar

from zasperhub.platform.kernels.deadline import DeadlineSelector

T = TypeVar("T")

_monotonic = time.monotonic
_heappop = heapq.heappop
_Handle = asyncio.Handle
_TimerHandle = asyncio.TimerHandle

#: asyncio's bounds, as base_events has them: the longest wait, and when to rebuild the timer heap.
_MAXIMUM_SELECT_TIMEOUT = 24 * 3600
_MIN_SCHEDULED_TIMER_HANDLES = 100
_MIN_CANCELLED_TIMER_HANDLES_FRACTION = 0.5

# selectors.EpollSelector's reading of epoll's bits: anything but EPOLLOUT
# (EPOLLHUP, EPOLLERR included) counts as readable, anything but EPOLLIN as writable.
_NOT_OUT = ~select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 0
_NOT_IN = ~select.EPOLLIN if hasattr(select, "EPOLLIN") else 0
_EVENT_READ = selectors.EVENT_READ
_EVENT_WRITE = selectors.EVENT_WRITE


def lean_pass_available() -> bool:
    """Whether this interpreter and platform get the lean pass (see the module docstring)."""
    return (
        (3, 11) <= sys.version_info[:2] <= (3, 13)
        and hasattr(select, "epoll")
        and selectors.DefaultSelector is selectors.EpollSelector
        and os.environ.get("ZASPERHUB_LEAN_LOOP", "1") != "0"
    )


class ServerLoop(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """asyncio's selector loop on a `DeadlineSelector`; see the module docstring."""

    # BaseEventLoop.time is a Python method returning time.monotonic(); this
    # is the same C function with no frame around it, and the clock the
    # selector's deadline is kept on.
    time = staticmethod(time.monotonic)  # type: ignore[assignment]

    def __init__(self) -> None:
        self.deadline_selector = DeadlineSelector()
        super().__init__(self.deadline_selector)
        self.lean = lean_pass_available()

    def _run_once(self) -> None:
        if not self.lean or self._debug:
            return super()._run_once()  # type: ignore[misc]
        # asyncio's pass, step for step (base_events.BaseEventLoop._run_once,
        # selectors.EpollSelector.select, selector_events._process_events,
        # events.Handle._run), with its helpers' frames folded in.
        scheduled = self._scheduled
        if scheduled:
            # Cancelled timers off the heap's head, or all of them when they are many.
            count = len(scheduled)
            if (count > _MIN_SCHEDULED_TIMER_HANDLES
                    and self._timer_cancelled_count / count > _MIN_CANCELLED_TIMER_HANDLES_FRACTION):
                scheduled = self._rebuild_timer_heap()
            else:
                while scheduled and scheduled[0]._cancelled:
                    self._timer_cancelled_count -= 1
                    _heappop(scheduled)._scheduled = False
        ready = self._ready
        selector = self.deadline_selector
        due = selector.due
        timeout: float | None = None
        if ready or self._stopping:
            timeout = 0.0
        elif scheduled or due is not None:
            now = _monotonic()
            if scheduled:
                timeout = scheduled[0]._when - now
                if timeout > _MAXIMUM_SELECT_TIMEOUT:
                    timeout = _MAXIMUM_SELECT_TIMEOUT
            if due is not None and (timeout is None or due - now < timeout):
                timeout = due - now
        if timeout is None:
            timeout = -1.0  # epoll: wait without end
        elif timeout <= 0:
            timeout = 0.0
        else:
            # Rounded up to epoll's millisecond, as selectors does, so a wait
            # never ends just before its timer falls due and spins.
            timeout = -(-timeout * 1000.0 // 1.0) / 1000.0
        fd_to_key = selector._fd_to_key
        try:
            events = selector._selector.poll(timeout, len(fd_to_key) or 1)
        except InterruptedError:
            events = []
        for fd, event in events:
            key = fd_to_key.get(fd)
            if key is None:
                continue
            reader, writer = key.data
            if event & _NOT_OUT and key.events & _EVENT_READ and reader is not None:
                if reader._cancelled:
                    self._remove_reader(key.fileobj)
                else:
                    ready.append(reader)
            if event & _NOT_IN and key.events & _EVENT_WRITE and writer is not None:
                if writer._cancelled:
                    self._remove_writer(key.fileobj)
                else:
                    ready.append(writer)
        events = None  # type: ignore[assignment]
        if due is not None or scheduled:
            # The deadline's check is DeadlineSelector.select's (asyncio's pass goes through that).
            now = _monotonic()
            if due is not None and now >= due and selector.owner is not None:
                selector.due = None
                selector.owner.fire_soon()  # queued: runs below with this pass's other callbacks
            end_time = now + self._clock_resolution
            while scheduled and scheduled[0]._when < end_time:
                timer = _heappop(scheduled)
                timer._scheduled = False
                ready.append(timer)
        # Only the callbacks ready now; those they schedule run next pass, after another poll.
        for _ in range(len(ready)):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            cls = handle.__class__
            if cls is not _Handle and cls is not _TimerHandle:
                handle._run()  # a handle type of its own: its own way of running
                continue
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                _report(self, handle, exc)
        handle = None  # type: ignore[assignment]  # no cycle through a traceback

    def _rebuild_timer_heap(self) -> list[asyncio.TimerHandle]:
        """The timer heap without its cancelled timers (asyncio's way, when over half are)."""
        kept = []
        for timer in self._scheduled:
            if timer._cancelled:
                timer._scheduled = False
            else:
                kept.append(timer)
        heapq.heapify(kept)
        self._scheduled = kept
        self._timer_cancelled_count = 0
        return kept


def _report(loop: asyncio.AbstractEventLoop, handle: asyncio.Handle, exc: BaseException) -> None:
    """What `Handle._run` tells the loop's exception handler when a callback raises."""
    callback, args = handle._callback, handle._args  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "message": f"Exception in callback {format_helpers._format_callback_source(callback, args)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:  # type: ignore[attr-defined]
        context["source_traceback"] = handle._source_traceback  # type: ignore[attr-defined]
    loop.call_exception_handler(context)


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on a `ServerLoop` (Python 3.11+; plain asyncio.run before)."""
    if sys.version_info < (3, 11):
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=ServerLoop) as runner:
        return runner.run(main)
