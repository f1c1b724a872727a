"""CPU priority of kernel processes relative to the server (Linux nice values and scheduler autogroups).

Kernels that saturate the CPU must leave the server, which routes their
traffic and answers the API, its share.  On Linux a nice value belongs to a
thread, and ranks threads only within one scheduler *autogroup*; with
autogroups enabled (most desktop and server distributions) every session is
its own group, and jupyter_client starts each kernel in a session of its
own.  So a kernel is lowered twice: each of its threads, and its autogroup
(through /proc/PID/autogroup).

Raising a nice value needs no privilege, but Linux lets a process without
CAP_SYS_ADMIN change *some* autogroup's nice at most once per 100 ms,
machine-wide (the write fails with EAGAIN).  A server run by an ordinary
user that starts several kernels at once (a pool, a restored set of
sessions) would leave all but the first at the normal weight, so
`Renicer` retries the refused ones, in order, as Linux allows.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections import OrderedDict

log = logging.getLogger(__name__)

#: Linux's minimum spacing of unprivileged autogroup writes is HZ/10 jiffies;
#: a little more, so one retry is enough.
RETRY_INTERVAL_S = 0.11
#: Give up on a group after this long (a process we may no longer write to).
RETRY_FOR_S = 30.0


def autogroup(pid: int | str) -> tuple[str, int] | None:
    """(name, nice) of the scheduler autogroup of `pid`, or None without autogroups."""
    try:
        with open(f"/proc/{pid}/autogroup") as f:
            name, _, nice = f.read().split()
        return name, int(nice)
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def renice_threads(pid: int, nice: int) -> bool:
    """Set every current thread of `pid` to `nice` (threads it starts later inherit it); False if none could be."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        tids = [pid]
    done = False
    for tid in tids:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
            done = True
        except OSError:  # the thread (or the whole process) already exited
            pass
    return done


def write_group_nice(pid: int, nice: int) -> None:
    """Set the nice value of `pid`'s autogroup; OSError as Linux reports it (EAGAIN: rate-limited)."""
    with open(f"/proc/{pid}/autogroup", "w") as f:
        f.write(str(nice))


class Renicer:
    """Lowers kernels below the server: threads at once, autogroups as fast as Linux allows.

    Refused autogroup writes (EAGAIN) wait in a queue, oldest first.  Every
    `RETRY_INTERVAL_S` the queue is written in order until Linux refuses
    again (one write per slot without CAP_SYS_ADMIN).  A queued process that
    exited, or whose pid now belongs to another process, is dropped.
    """

    def __init__(self) -> None:
        # pid -> (start time, nice, give-up time)
        self._pending: OrderedDict[int, tuple[int | None, int, float]] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> list[int]:
        """Pids whose autogroup still waits for its nice value."""
        return list(self._pending)

    def lower(self, pid: int, increment: int) -> int | None:
        """Put `pid` at the caller's nice + `increment`; the nice value set, or None if it could not be.

        The autogroup part may complete later (see the class docstring); it
        is only touched when the kernel is not in the caller's own group.
        """
        target = min(19, os.getpriority(os.PRIO_PROCESS, 0) + increment)
        done = renice_threads(pid, target)
        own, theirs = autogroup("self"), autogroup(pid)
        if own is not None and theirs is not None and theirs[0] != own[0]:
            nice = min(19, own[1] + increment)
            self._pending.pop(pid, None)
            # Behind queued groups it waits its turn (Linux would refuse it now anyway).
            written = False if self._pending else self._write(pid, nice)
            if written is None:
                return None
            if not written:
                self._queue(pid, nice)
        return target if done else None

    def close(self) -> None:
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _queue(self, pid: int, nice: int) -> None:
        loop = asyncio.get_running_loop()
        self._pending[pid] = (_start_time(pid), nice, loop.time() + RETRY_FOR_S)
        if self._timer is None:
            self._timer = loop.call_later(RETRY_INTERVAL_S, self._retry)

    def _retry(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        while self._pending:
            pid, (started, nice, give_up) = next(iter(self._pending.items()))
            if _start_time(pid) == started and loop.time() <= give_up and self._write(pid, nice) is False:
                break  # refused for now: the next 100 ms slot
            del self._pending[pid]  # written, not allowed, or the process is gone (or its pid reused)
        if self._pending:
            self._timer = loop.call_later(RETRY_INTERVAL_S, self._retry)

    @staticmethod
    def _write(pid: int, nice: int) -> bool | None:
        """True: written; False: refused for now (EAGAIN, the rate limit); None: cannot be (logged)."""
        try:
            write_group_nice(pid, nice)
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return False
            log.debug("Could not renice the autogroup of pid %s: %s", pid, e)
            return None
        return True
