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
"""

from __future__ import annotations

import resource
from collections.abc import Callable

from jupyterhub.spawner import LocalProcessSpawner, SimpleLocalProcessSpawner
from traitlets import Bool
from zasperhub.spawners.mixin import ZasperSpawnerMixin


def _with_limits(preexec: Callable[[], None] | None, mem_limit: int | None) -> Callable[[], None]:
    """Wrap a preexec function so the child also gets its memory limit."""

    def run() -> None:
        if mem_limit:
            resource.setrlimit(resource.RLIMIT_DATA, (mem_limit, mem_limit))
        if preexec is not None:
            preexec()

    return run


class LocalZasperSpawner(ZasperSpawnerMixin, LocalProcessSpawner):
    """`zasperhub-singleuser` as the user's own system process."""

    enforce_mem_limit = Bool(True, config=True, help="Apply mem_limit as RLIMIT_DATA on the server and its kernels.")

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        # Set the limit before dropping privileges: an unprivileged process
        # could otherwise raise it again.
        limit = self.mem_limit if self.enforce_mem_limit else None
        return _with_limits(super().make_preexec_fn(name), limit)


class SimpleLocalZasperSpawner(ZasperSpawnerMixin, SimpleLocalProcessSpawner):
    """Every server as the hub's user in `home_dir_template` (testing only)."""

    enforce_mem_limit = Bool(True, config=True, help="Apply mem_limit as RLIMIT_DATA on the server and its kernels.")

    def make_preexec_fn(self, name: str) -> Callable[[], None]:
        limit = self.mem_limit if self.enforce_mem_limit else None
        return _with_limits(super().make_preexec_fn(name), limit)
