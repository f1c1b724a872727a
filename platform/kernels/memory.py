"""Keep the server's resident memory close to what it actually uses (glibc only).

Two allocator habits, not leaks, kept the server's RSS high after bursts:

* every thread that allocates (libzmq's I/O thread, the executor threads that
  import jupyter_client and look up kernelspecs) gets its own glibc arena of
  up to 64 MiB address space, and freed memory in one arena is never reused
  by another;
* freed memory at the top of an arena is only returned to the system past
  `M_TRIM_THRESHOLD`, and freed memory in the middle of one never is, unless
  `malloc_trim` is called.

`limit_arenas` caps the arena count (what `MALLOC_ARENA_MAX` does, but set
from inside the process through `mallopt`, so it needs no environment set
before start; it must run before the threads exist).  `trim_soon` schedules
one `malloc_trim(0)` shortly after kernels go away, coalescing a burst of
deletes into one call.  On other C libraries both are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
from typing import Any

log = logging.getLogger("zasperhub.kernels")

#: mallopt parameter numbers from glibc's malloc.h.
_M_ARENA_MAX = -8

_libc: Any = None
_trim_handle: asyncio.TimerHandle | None = None


def _glibc() -> Any:
    """The C library if it is glibc (has malloc_trim and mallopt), else None."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = lib
            except (OSError, AttributeError):
                pass
    return _libc or None


def limit_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas at `count` (0: leave the default); True if applied."""
    lib = _glibc()
    if lib is None or count <= 0:
        return False
    return bool(lib.mallopt(_M_ARENA_MAX, count))


def trim() -> None:
    """Return every arena's free pages to the system now."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def trim_soon(delay: float = 1.0) -> None:
    """Trim once, `delay` seconds from now; calls while one is pending add nothing.

    Deleting 64 sessions calls this 64 times; `malloc_trim` walks the whole
    heap, so one trim per burst (and at most one per `delay`) is enough, and
    every call is followed by a trim within `delay` seconds.
    """
    global _trim_handle
    if _glibc() is None or _trim_handle is not None:
        return
    _trim_handle = asyncio.get_running_loop().call_later(delay, _run_trim)


def _run_trim() -> None:
    global _trim_handle
    _trim_handle = None
    trim()
