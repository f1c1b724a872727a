"""Waiting for a kernel process to exit without polling it: a Linux pidfd on the event loop.

The kernel monitor used to wake once a second to ask every provisioner whether
its process was still alive.  On an idle server with two kernels that cost
~3 ms of CPU per second (a cold wake-up of the loop, a coroutine step and a
`waitpid` per kernel) and ~15 % of the server's CPU at 2 kernels × 10
executes/s (benchmarks/RESULTS.md, session 11).  A pidfd (Linux ≥ 5.3,
`os.pidfd_open`) becomes readable when the process terminates, so the loop
sleeps until something actually happened.

Where a pid cannot be watched (another OS, a provisioner without a local
process, a pidfd refused) `wait_exit` says so and the caller polls as before.
"""

from __future__ import annotations

import asyncio
import os


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_exit(pid: int, timeout: float | None) -> bool | None:
    """Wait until process `pid` terminates.

    True once it has (or was already gone), False when `timeout` seconds
    passed first, None when the pid cannot be watched here (poll instead).
    Only the process's own parent may rely on this: the pid must not have been
    reaped and reused, which holds while nobody but its `Popen` waits for it.
    """
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        fd = opener(pid)
    except ProcessLookupError:
        return True
    except OSError:
        return None
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    try:
        try:
            loop.add_reader(fd, _wake, fut)
        except (NotImplementedError, OSError):
            return None
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False
        return True
    finally:
        loop.remove_reader(fd)
        os.close(fd)
