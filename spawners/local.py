"""Zasper spawners for local processes.

`LocalZasperSpawner` runs each user's `zasperhub-singleuser` as that system
user (JupyterHub's `LocalProcessSpawner`).  `SimpleLocalZasperSpawner` runs
every server as the hub's own user in a per-user directory; it is for trying
the hub and for tests, and isolates nothing on the local disk.

Resource limits: `mem_limit` is enforced with `RLIMIT_DATA` on the server
process (inherited by its kernels: each process may use up to the limit,
so it caps runaway kernels rather than the user's sum).  `cpu_limit` is only
advertised (`CPU_LIMIT` in the environment) — local processes have no CPU
quota without cgroups; use the Kubernetes spawner where limits matter.

Readiness: JupyterHub polls a new server's URL with exponential back-off
and random jitter (first poll at once, then up to 0.2, 0.4, 0.8 … s apart),
so a server that listens 0.5 s after launch is often seen ready only
1–2 s later.  `start` therefore waits (bounded by `ready_wait`) until the
server's port accepts connections (first retry after 10 ms, growing to
100 ms apart: cheap for the hub's event loop even with dozens of servers
starting at once) and only then hands over: the hub's first poll succeeds.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from typing import Any

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable
from zasperhub.spawners.mixin import ZasperSpawnerMixin


def _with_limits(preexec: Callable[[], None] | None, mem_limit: int | None) -> Callable[[], None]:
    """Wrap a preexec function so the child also gets its memory limit."""

    def run() -> None:
        if mem_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (mem_limit, mem_limit))
        if preexec is not None:
            preexec()

    return run


#: Seconds between connection attempts while waiting for a new server: first and largest.
LISTEN_POLL_FIRST = 0.01
LISTEN_POLL_MAX = 0.1


async def wait_listening(host: str, port: int, timeout: float, exited: Callable[[], bool]) -> bool:
    """Wait until `host:port` accepts a TCP connection; False on timeout or process exit."""
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    deadline = time.monotonic() + timeout
    interval = LISTEN_POLL_FIRST
    while time.monotonic() < deadline:
        if exited():
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(interval)
            interval = min(LISTEN_POLL_MAX, interval * 1.5)
            continue
        writer.close()
        return True
    return False


class _WaitListening(LoggingConfigurable):
    """`start` returns once the new server listens (see the module docstring)."""

    ready_wait = Float(
        30.0,
        config=True,
        help="Seconds start() waits for the server's port before leaving the rest to the hub's polling (0: do not wait).",
    )

    async def start(self) -> Any:
        result = await super().start()  # type: ignore[misc]
        if self.ready_wait > 0 and isinstance(result, tuple) and len(result) == 2:
            proc = getattr(self, "proc", None)
            listening = await wait_listening(
                str(result[0]), int(result[1]), self.ready_wait, lambda: proc is not None and proc.poll() is not None
            )
            if not listening:
                # The hub's own wait reports a dead or slow server with its usual messages.
                self.log.info("Server of %s not listening yet after %.0f s; the hub keeps waiting", self.user.name, self.ready_wait)  # type: ignore[attr-defined]
        return result


class LocalZasperSpawner(_WaitListening, ZasperSpawnerMixin, LocalProcessSpawner):
    """`zasperhub-singleuser` as the user's own system process."""

    enforce_mem_limit = Bool(True, config=True, help="Apply mem_limit as RLIMIT_DATA on the server and its kernels.")

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        # Set the limit before dropping privileges: an unprivileged process
        # could otherwise raise it again.
        limit = self.mem_limit if self.enforce_mem_limit else None
        return _with_limits(super().make_preexec_fn(name), limit)


class SimpleLocalZasperSpawner(_WaitListening, ZasperSpawnerMixin, SimpleLocalProcessSpawner):
    """Every server as the hub's user in `home_dir_template` (testing only)."""

    enforce_mem_limit = Bool(True, config=True, help="Apply mem_limit as RLIMIT_DATA on the server and its kernels.")

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        limit = self.mem_limit if self.enforce_mem_limit else None
        return _with_limits(super().make_preexec_fn(name), limit)
