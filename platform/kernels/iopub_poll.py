"""Every ZMTP kernel's iopub connection watched in one epoll set of the server's own.

Why: the read gate (coalesce.py) stops reading a kernel's iopub while a
request is outstanding and starts again when the answer arrives, once per
round trip.  Done by pausing and resuming the asyncio transport, that is
about thirty Python calls of selector bookkeeping per round trip, and under
uvloop worse: libuv disarms a paused descriptor lazily, so the kernel's first
output on a held socket still wakes the loop once, just to be ignored
(benchmarks/results/cpu.md, session 10).  Here holding is one `epoll_ctl`
on a set only this module uses, effective at once; the event loop watches
just that set's descriptor, which never changes.

The transport of a polled connection stays paused for good; this module
reads nothing itself, it calls the channel back.  Linux only (epoll); where
it is missing, `poller_for` returns None and channels pause their transports
as before.
"""

from __future__ import annotations

import asyncio
import logging
import select
import weakref
from collections.abc import Callable

log = logging.getLogger("zasperhub.kernels")

#: Events reported for a descriptor whatever it asked for: the peer is gone.
ENDED = getattr(select, "EPOLLHUP", 0) | getattr(select, "EPOLLERR", 0)
READABLE = getattr(select, "EPOLLIN", 0)

#: callback(events) for one registered descriptor.
OnReady = Callable[[int], None]


class IopubPoller:
    """One epoll set for one event loop's iopub connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._callbacks: dict[int, OnReady] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, callback: OnReady, reading: bool) -> None:
        """Watch `fd` (readable events only while `reading`)."""
        self._epoll.register(fd, READABLE if reading else 0)
        self._callbacks[fd] = callback

    def set_reading(self, fd: int, reading: bool) -> None:
        """Hold (False) or release (True) `fd`: takes effect before the loop next waits."""
        self._epoll.modify(fd, READABLE if reading else 0)

    def remove(self, fd: int) -> None:
        """Stop watching `fd` (before it is closed; idempotent)."""
        if self._callbacks.pop(fd, None) is None:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # closed already: the kernel dropped it from the set
            pass

    def _ready(self) -> None:
        for fd, events in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is None:
                continue
            try:
                callback(events)
            except Exception:  # one kernel's failure must not stop the others being read
                log.exception("Error reading a kernel's iopub")


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, IopubPoller] = weakref.WeakKeyDictionary()


def poller_for(loop: asyncio.AbstractEventLoop) -> IopubPoller | None:
    """The running loop's poller (made on first use), or None without epoll."""
    if not hasattr(select, "epoll"):
        return None
    poller = _pollers.get(loop)
    if poller is None:
        poller = _pollers[loop] = IopubPoller(loop)
    return poller
