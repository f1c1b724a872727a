"""An opt-in pool of pre-started kernels, so a new session gets a kernel in milliseconds.

With `--KernelRegistry.pool_size=N` the registry keeps N kernels of the
default kernelspec running in `root_dir`, already past their kernel_info
handshake.  A request for the default kernelspec takes one and the pool
refills in the background, one kernel at a time (start-ups are CPU-heavy and
the machine is shared with the kernels already in use).

Working directory and environment: a pooled kernel was started in root_dir
with the server's environment.  At handoff the requested cwd and the extra
variables (`JPY_SESSION_NAME`, `KERNEL_*`) are applied inside the kernel by
a silent execute (`silent: true, store_history: false`): ipykernel then
neither counts it nor broadcasts it, and its iopub traffic belongs to the
server's session, so clients never see it and the first user cell is still
`execution_count` 1.  If that fails the kernel is discarded and a fresh one
is started the normal way.

Filling never blocks start-up (it runs as a task after the server listens),
failures back off and are bounded, and `close()` shuts down every pooled or
starting kernel so none outlives the server.

Warm kernels (`KernelRegistry.prewarm`): a pool of any size, even 0, can be
asked for one kernel beyond its size (`warm`).  It is the first handed out;
if nobody takes it within the timeout it is shut down and the pool shrinks
back to its size.

Handoff under load: the silent execute that moves a kernel to its directory
waits for the kernel to answer, which on a saturated machine can take long;
its timeout is generous (`HANDOFF_TIMEOUT`), and a pooled kernel counts as
ready only after the kernel_info handshake *and* a first silent execute
(`_prime`) went through — the kernel has then imported what executing code
needs, so the handoff's execute is a short one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from zasperhub.platform.kernels.kernel import ManagedKernel
    from zasperhub.platform.kernels.registry import KernelRegistry

log = logging.getLogger("zasperhub.kernels")

#: Consecutive failed pool starts after which filling stops until the next handoff.
MAX_FAILURES = 3
#: Seconds between retries after a failed pool start.
RETRY_DELAY = 2.0
#: Seconds a handoff's silent execute may take before the kernel is discarded.
#: A ready kernel answers in milliseconds; only a machine whose CPUs are
#: saturated (the kernel waits for a time slice) takes seconds, and falling
#: back to a fresh kernel then costs far more than waiting.
HANDOFF_TIMEOUT = 60.0
#: Code run once in a new pooled kernel before it counts as ready.
PRIME_CODE = "pass"


def handoff_code(cwd: str, env: dict[str, str]) -> str:
    """Python run silently in a pooled kernel to give it the requested cwd and env.

    Only builtins are used so nothing is bound in the user's namespace; the
    values are embedded as JSON string literals, which are valid Python.
    """
    code = f"__import__('os').chdir({orjson.dumps(cwd).decode()})"
    if env:
        code += f"\n__import__('os').environ.update({orjson.dumps(env).decode()})"
    return code


class KernelPool:
    """Pre-started kernels of one kernelspec, handed out once each."""

    def __init__(self, registry: KernelRegistry, size: int, kernel_name: str, cwd: str) -> None:
        self.registry = registry
        self.size = size
        self.kernel_name = kernel_name
        self.cwd = cwd
        self._ready: list[ManagedKernel] = []
        self._starting: set[ManagedKernel] = set()
        self._filler: asyncio.Task[None] | None = None
        self._closing = False
        #: Kernels wanted beyond `size` (0 or 1: the prewarmed kernel).
        self.extra = 0
        self._expiry: asyncio.TimerHandle | None = None
        # Shutdowns of expired warm kernels, awaited by close().
        self._discards: set[asyncio.Task[None]] = set()

    @property
    def ready_count(self) -> int:
        """Pooled kernels ready to hand out."""
        return len(self._ready)

    def kernels(self) -> list[ManagedKernel]:
        """Every kernel the pool owns (ready or starting)."""
        return [*self._ready, *self._starting]

    @property
    def target(self) -> int:
        """How many kernels the pool keeps ready or starting."""
        return self.size + self.extra

    def fill(self) -> None:
        """Start topping the pool up in the background (no-op while a fill runs)."""
        if self._closing or self.target <= 0:
            return
        if self._filler is None or self._filler.done():
            self._filler = asyncio.create_task(self._fill_loop(), name="kernel-pool-fill")

    def warm(self, timeout: float) -> None:
        """Keep one kernel beyond `size` until it is taken or `timeout` seconds pass.

        Idempotent: while a warm kernel is wanted, a call only restarts the
        clock.  With `size` > 0 the pool already holds a kernel, so only
        filling is resumed (it may have stopped after failures).
        """
        if self._closing:
            return
        if self.size > 0:
            self.fill()
            return
        self.extra = 1
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(timeout, self._expire)
        self.fill()

    def _expire(self) -> None:
        self._expiry = None
        if self.extra == 0 or self._closing:
            return
        self.extra = 0
        surplus = self._ready[self.size :]
        del self._ready[self.size :]
        for kernel in surplus:
            log.info("Warm kernel %s (%s) was not used; shutting it down", kernel.id, self.kernel_name)
            # Tracked, so close() can wait for it and nothing outlives the server.
            task = asyncio.create_task(self._discard(kernel, "warm kernel unused"))
            self._discards.add(task)
            task.add_done_callback(self._discards.discard)
        # A warm kernel still starting is discarded when its start finishes (`_fill_loop`).

    async def _fill_loop(self) -> None:
        failures = 0
        while not self._closing and len(self._ready) + len(self._starting) < self.target:
            kernel = self.registry.new_kernel(self.kernel_name)
            self._starting.add(kernel)
            try:
                await self.registry.launch(kernel, self.cwd, None)
                if not await kernel.wait_ready(self.registry.kernel_info_timeout):
                    raise TimeoutError("no kernel_info reply")
                reply = await kernel.run_silent(PRIME_CODE, self.registry.kernel_info_timeout)
                if reply.get("status") != "ok":
                    raise RuntimeError(f"first execute failed: {reply.get('ename')}: {reply.get('evalue')}")
            except Exception as e:  # noqa: BLE001 - a failed pool start must not end the server
                self._starting.discard(kernel)
                await self._discard(kernel, "pool start failed")
                failures += 1
                log.warning("Pooled kernel (%s) failed to start (%d of %d): %s", self.kernel_name, failures, MAX_FAILURES, e)
                if failures >= MAX_FAILURES:
                    log.error("Kernel pool stops filling after %d failures; the next handoff retries", failures)
                    return
                await asyncio.sleep(RETRY_DELAY)
                continue
            except BaseException:
                # Cancelled mid-start: the process may exist already.
                self._starting.discard(kernel)
                await asyncio.shield(self._discard(kernel, "pool closing"))
                raise
            self._starting.discard(kernel)
            failures = 0
            if self._closing:
                await self._discard(kernel, "pool closing")
                return
            if len(self._ready) >= self.target:
                # The warm kernel expired while it started.
                await self._discard(kernel, "warm kernel unused")
                continue
            self._ready.append(kernel)
            log.info("Pooled kernel %s ready (%d of %d)", kernel.id, len(self._ready), self.size)

    async def take(self, cwd: str, env: dict[str, str] | None) -> ManagedKernel | None:
        """A ready kernel moved to `cwd` with `env` applied, or None (caller starts one)."""
        while self._ready and not self._closing:
            kernel = self._ready.pop(0)
            if self.extra:
                # The warm kernel is the one handed out: it is not replaced.
                self.extra = 0
                if self._expiry is not None:
                    self._expiry.cancel()
                    self._expiry = None
            self.fill()
            if kernel.shutting_down or kernel.execution_state in ("dead", "restarting", "starting"):
                await self._discard(kernel, "pooled kernel not usable")
                continue
            try:
                reply = await kernel.run_silent(handoff_code(cwd, dict(env or {})), HANDOFF_TIMEOUT)
            except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError) as e:
                log.warning("Pooled kernel %s did not take its working directory (%s); discarded", kernel.id, e)
                await self._discard(kernel, "handoff failed")
                continue
            if reply.get("status") != "ok":
                log.warning("Pooled kernel %s could not change to %s: %s: %s", kernel.id, cwd, reply.get("ename"), reply.get("evalue"))
                await self._discard(kernel, "handoff failed")
                return None
            return kernel
        return None

    async def _discard(self, kernel: ManagedKernel, reason: str) -> None:
        try:
            await kernel.shutdown(now=True, reason=reason)
        except Exception as e:  # noqa: BLE001 - best effort; logged
            log.warning("Shutting down pooled kernel %s failed: %s", kernel.id, e)

    async def close(self) -> None:
        """Stop filling and shut every pooled kernel down (server exit)."""
        self._closing = True
        self.extra = 0
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self._filler is not None and not self._filler.done():
            # A start in progress finishes (bounded by kernel_info_timeout)
            # so its process is known and can be stopped; then it is cancelled.
            done, _ = await asyncio.wait({self._filler}, timeout=self.registry.kernel_info_timeout)
            if not done:
                self._filler.cancel()
                await asyncio.gather(self._filler, return_exceptions=True)
        kernels = self.kernels()
        self._ready.clear()
        self._starting.clear()
        await asyncio.gather(*(self._discard(k, "server shutting down") for k in kernels), *self._discards)
