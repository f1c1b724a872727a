"""All kernels of one server: start/stop through jupyter_client, configuration, culling.

`KernelRegistry` is a traitlets `LoggingConfigurable`, so every bound below
can be set the Jupyter way (`--KernelRegistry.cull_idle_timeout=600`, config
files).  The `AsyncKernelManager`s it creates are its children, so
`--KernelManager.*` / `--AsyncKernelManager.*` settings apply to them.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib
import os
import time
import uuid
from typing import TYPE_CHECKING, Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Enum, Float, Int, Unicode, default
from traitlets.config import LoggingConfigurable
from zasperhub.platform.kernels import memory, native, ports
from zasperhub.platform.kernels.admission import Admission
from zasperhub.platform.kernels.coalesce import ReadGate
from zasperhub.platform.kernels.pool import KernelPool
from zasperhub.platform.kernels.priority import Renicer
from zasperhub.platform.kernels.replay import ReplayBudget

if TYPE_CHECKING:
    from jupyter_client.kernelspec import KernelSpecManager
    from zasperhub.platform.kernels.kernel import ManagedKernel

# jupyter_client and pyzmq (≈0.2–0.5 s and ~4 MB of imports together) are not
# needed to answer the first request, so they are imported off the start-up
# path: in a worker thread once the server listens (`start`), or on first
# kernel use.


def _import_jupyter_client() -> None:
    """Import what kernel start-up needs (run in a worker thread)."""
    for module in ("zasperhub.platform.kernels.specs", "jupyter_client.manager", "jupyter_core.paths", "zasperhub.platform.kernels.kernel"):
        importlib.import_module(module)


class KernelStartError(RuntimeError):
    """The kernel process could not be launched (bad argv, missing interpreter, provisioner failure)."""


class ServerClosingError(RuntimeError):
    """The server is shutting down: no kernel is started, and the existing ones are going away."""


class KernelRegistry(LoggingConfigurable):
    """The running kernels, by id."""

    root_dir = Unicode(help="Working directory for kernels started without a path.")
    default_kernel_name = Unicode(config=True, help="Kernelspec used when a request names none.")

    cull_idle_timeout = Int(0, config=True, help="Shut down kernels idle this many seconds (0: never).")
    cull_interval = Int(300, config=True, help="Seconds between idle checks.")
    cull_connected = Bool(False, config=True, help="Also cull idle kernels that have clients connected.")
    cull_busy = Bool(False, config=True, help="Also cull kernels whose execution_state is busy.")

    restart_limit = Int(5, config=True, help="Automatic restarts of a dying kernel allowed per restart_window.")
    restart_window = Float(60.0, config=True, help="Seconds over which restart_limit counts.")
    poll_interval = Float(1.0, config=True, help="Seconds between checks that each kernel process is alive.")
    kernel_info_timeout = Float(
        60.0, config=True,
        help="Seconds a (re)started kernel has to answer kernel_info; one still silent then is stopped and "
        "restarted on new ports (counting against restart_limit).",
    )
    shutdown_wait_time = Float(3.0, config=True, help="Seconds a kernel gets to exit after a shutdown request before it is killed.")

    replay_buffer_bytes = Int(
        8 * 1024 * 1024, config=True,
        help="Bytes of kernel messages kept per kernel while no client is connected (oldest dropped beyond).",
    )
    replay_buffer_messages = Int(10_000, config=True, help="Messages kept per kernel while no client is connected.")
    replay_total_bytes = Int(
        64 * 1024 * 1024, config=True,
        help="Bytes all kernels' replay buffers may hold together (oldest of the adding kernel dropped beyond).",
    )
    client_buffer_bytes = Int(
        32 * 1024 * 1024, config=True,
        help="Bytes queued for one slow WebSocket client before it is disconnected (code 1013).",
    )
    max_message_bytes = Int(64 * 1024 * 1024, config=True, help="Largest WebSocket frame a client may send.")

    kernel_transport = Enum(
        ["", "pyzmq", "zmtp"], "", config=True,
        help="How the server talks to kernels: 'zmtp' (the ZMQ wire protocol spoken on the event loop over TCP "
        "or ipc, the default; less CPU per message) or 'pyzmq' (libzmq).  CurveZMQ-encrypted kernels always "
        "use pyzmq.  Empty: the ZASPERHUB_KERNEL_TRANSPORT environment variable, else zmtp.",
    )
    # 7 (session 6, benchmarks/RESULTS.md): at 64×10 and 16×100 it kept
    # /api/status p99 at 26–688 ms where 5 let it reach 0.3–4.2 s, with the
    # same replies/s; 10 kept it under 70 ms in every run but cost 12 % of
    # the replies at 64×10.  0 lets 64 busy kernels starve the API.
    kernel_niceness = Int(
        7, config=True,
        help="Nice increment for kernel processes over the server's own (0: same priority), applied once a kernel "
        "answers its first kernel_info (its start-up keeps the server's priority).  Kernels that saturate the "
        "CPU then still leave the server, which routes their traffic and answers the API, its share.",
    )
    native_path = Bool(
        True, config=True,
        help="Route kernel messages through the compiled fast path (platform/kernels/_native.c) where it "
        "applies: ZMTP kernels with HMAC-SHA256 signatures and direct WebSocket clients.  Anything else, and "
        "everything when the extension was not built, takes the pure-Python path.  False (or the environment "
        "variable ZASPERHUB_NATIVE=0): always Python, for the whole process.",
    )
    read_coalesce_ms = Float(
        50.0, config=True,
        help="Longest time (ms) a kernel's outputs are left unread after a request is forwarded to it.  They "
        "are read, in one event-loop wake-up and before it, when the kernel's answer arrives (execute_reply, "
        "input_request), which is not delayed; a cell running longer gets its outputs at this deadline.  "
        "0: read every message the moment it arrives.  Wake-ups, not bytes, are most of the server's CPU "
        "per round trip; see platform/kernels/coalesce.py.",
    )
    # Measured (platform/kernels/admission.py, benchmarks/RESULTS.md session 7):
    # 64 kernels x 10 executes/s on 2 cores, replies/s 4 slots: 595, 8: 620,
    # 12: 598, unlimited: 250-330.
    max_busy_kernels = Int(
        4 * (os.cpu_count() or 1), config=True,
        help="Idle kernels allowed to start executing at once (0: no limit).  Beyond it an execute_request for "
        "an idle kernel, and what follows it, waits in the server and is sent in one batch when a slot frees; "
        "a kernel that is already executing takes new requests at once.  With more busy kernels than cores, "
        "kernels spend twice the CPU per request; see platform/kernels/admission.py.",
    )
    max_waiting_messages = Int(
        32768, config=True,
        help="Shell messages (about 1 KB each) all kernels together may have waiting for max_busy_kernels; "
        "beyond it a kernel's messages go on to the kernel's own queue, as without admission, until it catches up.",
    )
    busy_slot_seconds = Float(
        1.0, config=True,
        help="A kernel stops counting against max_busy_kernels after executing this long (its cell keeps running).",
    )
    kernel_port_range = Unicode(
        "", config=True,
        help="LOW-HIGH: the TCP ports local kernels are started on.  Empty: from 10000 up to the start of the "
        "system's ephemeral port range, which outgoing connections never take as their source port (a kernel "
        "that loses a port to one between its pick and its bind hangs; see platform/kernels/ports.py).  "
        "'ephemeral': jupyter_client's own picks.",
    )
    malloc_arena_max = Int(
        2, config=True,
        help="Cap on glibc malloc arenas in the server process (0: glibc default, 8 per core); fewer arenas "
        "return memory freed after a burst to the system instead of keeping it per thread.",
    )

    pool_size = Int(
        0, config=True,
        help="Kernels of the default kernelspec kept pre-started in root_dir and handed to new sessions (0: no pool).",
    )
    prewarm_timeout = Float(
        600.0, config=True,
        help="Seconds a kernel started by prewarm() waits to be taken before it is shut down again.",
    )
    preload = Bool(
        True, config=True,
        help="Import jupyter_client in the background once the server listens (else on first kernel use).",
    )

    # Not an `Instance` trait: traitlets resolves an Instance's class when the
    # registry is created, which would import jupyter_client at start-up.
    kernel_spec_manager = AnyTrait(help="The jupyter_client KernelSpecManager (created on first use).")

    @default("kernel_spec_manager")
    def _default_ksm(self) -> KernelSpecManager:
        from zasperhub.platform.kernels.specs import LeanKernelSpecManager

        return LeanKernelSpecManager(parent=self)

    @default("default_kernel_name")
    def _default_kernel_name(self) -> str:
        return "python3"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kernels: dict[str, ManagedKernel] = {}
        self._culler: asyncio.Task[None] | None = None
        self._import_future: asyncio.Future[None] | None = None
        self._pool: KernelPool | None = None
        self._pool_task: asyncio.Task[None] | None = None
        # Pools by kernelspec: the configured one and those prewarm() made.
        self._pools: dict[str, KernelPool] = {}
        self._prewarm_task: asyncio.Task[None] | None = None
        #: True once shutdown_all began: requests for kernels get 503, not 404.
        self.closing = False
        self.replay_budget = ReplayBudget(self.replay_total_bytes)
        self.read_gate = ReadGate(self.read_coalesce_ms / 1000.0)
        native.configure(self.native_path)
        self.admission = (
            Admission(self.max_busy_kernels, self.busy_slot_seconds, self.max_waiting_messages)
            if self.max_busy_kernels > 0 else None
        )
        self._renicer = Renicer()
        # None: jupyter_client picks kernel ports itself.  Made here so a bad range stops the server at once.
        self._port_picker = ports.make_picker(self.kernel_port_range)
        # Must happen before libzmq's and the executor's threads exist, which
        # are created on first kernel use (after this constructor).
        memory.limit_arenas(self.malloc_arena_max)

    async def _ensure_imported(self) -> None:
        """Wait for jupyter_client's import without blocking the event loop.

        Importing it on the loop thread would stall every connection for the
        import's duration, and would wait on the warm-up thread's import
        lock anyway; so the import always happens in a worker thread.
        """
        if self._import_future is None:
            self._import_future = asyncio.get_running_loop().run_in_executor(None, _import_jupyter_client)
        await asyncio.shield(self._import_future)

    async def _start_pool(self) -> None:
        await self._ensure_imported()
        self._pool = self._pool_for(self.default_kernel_name)
        self._pool.size = self.pool_size
        self.log.info("Keeping %d pre-started %s kernel(s) in %s", self.pool_size, self._pool.kernel_name, self._pool.cwd)
        self._pool.fill()

    def _pool_for(self, name: str) -> KernelPool:
        pool = self._pools.get(name)
        if pool is None:
            pool = self._pools[name] = KernelPool(self, 0, name, self.root_dir or os.getcwd())
        return pool

    def prewarm(self, kernel_name: str | None = None) -> None:
        """Have one kernel of `kernel_name` (default kernelspec) starting or ready for the next session.

        Returns at once (the start runs as a task) and is idempotent: with a
        pool of that kernelspec already holding or starting a kernel nothing
        more starts; otherwise one "warm" kernel beyond `pool_size` starts,
        and is shut down again if nobody takes it within `prewarm_timeout`
        seconds (a call while it waits restarts that clock).  Never more than
        one warm kernel exists at a time, across kernelspecs: a call for
        another kernelspec while one waits is ignored.  An unknown kernelspec
        is logged and ignored.  The server's exit shuts a warm kernel down.
        """
        if self.closing:
            return
        name = kernel_name or self.default_kernel_name
        if self._prewarm_task is not None and not self._prewarm_task.done():
            return  # a previous call is still creating the pool
        self._prewarm_task = asyncio.create_task(self._prewarm_logged(name), name="kernel-prewarm")

    async def _prewarm_logged(self, name: str) -> None:
        try:
            await self._prewarm(name)
        except Exception:  # a hint that fails must not surface anywhere else
            self.log.exception("prewarm(%s) failed", name)

    async def _prewarm(self, name: str) -> None:
        await self._ensure_imported()
        if self.closing:
            return
        warm = [p for p in self._pools.values() if p.extra]
        if warm and warm[0].kernel_name != name:
            self.log.info("prewarm(%s) ignored: a warm %s kernel is already waiting", name, warm[0].kernel_name)
            return
        if name not in self._pools:
            from jupyter_client.kernelspec import NoSuchKernel

            try:
                await asyncio.to_thread(self.kernel_spec_manager.get_kernel_spec, name)
            except NoSuchKernel:
                self.log.warning("prewarm: no such kernel spec %r; nothing started", name)
                return
            if self.closing:
                return
        self._pool_for(name).warm(self.prewarm_timeout)

    @property
    def pool(self) -> KernelPool | None:
        """The kernel pool, once created (None when pool_size is 0)."""
        return self._pool

    # -- queries ---------------------------------------------------------------
    def warm_kernels(self) -> list[ManagedKernel]:
        """Kernels held (ready or starting) by every pool, prewarmed ones included."""
        return [k for pool in self._pools.values() for k in pool.kernels()]

    def __contains__(self, kernel_id: str) -> bool:
        return kernel_id in self._kernels

    def get(self, kernel_id: str) -> ManagedKernel:
        """The kernel with this id; `KeyError` if there is none."""
        try:
            return self._kernels[kernel_id]
        except KeyError:
            raise KeyError(f"Kernel does not exist: {kernel_id}") from None

    def model(self, kernel_id: str) -> dict[str, Any]:
        return self.get(kernel_id).model()

    def list_models(self) -> list[dict[str, Any]]:
        return [k.model() for k in self._kernels.values()]

    def counts(self) -> tuple[int, int]:
        """(kernels, client connections) without building every kernel's model."""
        return len(self._kernels), sum(k.connection_count for k in self._kernels.values())

    def last_activity(self) -> datetime.datetime | None:
        if not self._kernels:
            return None
        return max(k.last_activity_dt() for k in self._kernels.values())

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Start background work: jupyter_client warm-up, the pool, the idle culler.

        Nothing here waits: the server answers requests while jupyter_client
        is imported and pooled kernels start.
        """
        loop = asyncio.get_running_loop()
        if self.preload and self._import_future is None:
            self._import_future = loop.run_in_executor(None, _import_jupyter_client)
        if self.pool_size > 0 and self._pool is None:
            self._pool_task = asyncio.create_task(self._start_pool(), name="kernel-pool-start")
        if self.cull_idle_timeout > 0 and self._culler is None:
            self.log.info("Culling kernels idle for %ds (checked every %ds)", self.cull_idle_timeout, self.cull_interval)
            self._culler = asyncio.create_task(self._cull_loop(), name="kernel-culler")

    async def start_kernel(self, name: str | None = None, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
        """Launch a kernel from kernelspec `name` in `cwd`; returns its id.

        Served from the pool when one is configured and `name` is its
        kernelspec.  `KeyError` for an unknown kernelspec, `FileNotFoundError`
        for a missing cwd, `KernelStartError` when the launch itself fails.
        """
        if self.closing:
            raise ServerClosingError("The server is shutting down")
        name = name or self.default_kernel_name
        cwd = cwd or self.root_dir or os.getcwd()
        pool = self._pools.get(name)
        if pool is not None and pool.ready_count:
            if not os.path.isdir(cwd):
                raise FileNotFoundError(f"Kernel working directory does not exist: {cwd}")
            pooled = await pool.take(cwd, env)
            if pooled is not None:
                self._kernels[pooled.id] = pooled
                pooled.last_activity = time.time()
                self.log.info("Kernel %s (%s) handed out from the pool in %s", pooled.id, name, cwd)
                return pooled.id
        await self._ensure_imported()
        from jupyter_client.kernelspec import NoSuchKernel

        try:
            await asyncio.to_thread(self.kernel_spec_manager.get_kernel_spec, name)
        except NoSuchKernel:
            raise KeyError(f"No such kernel spec: {name}") from None
        if not os.path.isdir(cwd):
            raise FileNotFoundError(f"Kernel working directory does not exist: {cwd}")
        kernel = self.new_kernel(name)
        await self.launch(kernel, cwd, env)
        if self.closing:
            # Shutdown began while this kernel started: shutdown_all no longer sees it.
            await kernel.shutdown(now=True, reason="server shutting down")
            raise ServerClosingError("The server is shutting down")
        self._kernels[kernel.id] = kernel
        self.log.info("Kernel %s (%s) started in %s", kernel.id, name, cwd)
        return kernel.id

    def new_kernel(self, name: str) -> ManagedKernel:
        """A not yet launched kernel of kernelspec `name` (jupyter_client must be imported)."""
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.paths import jupyter_runtime_dir
        from zasperhub.platform.kernels.kernel import ManagedKernel

        kernel_id = str(uuid.uuid4())
        runtime = jupyter_runtime_dir()
        os.makedirs(runtime, exist_ok=True)
        manager = AsyncKernelManager(
            parent=self,
            kernel_name=name,
            kernel_id=kernel_id,
            kernel_spec_manager=self.kernel_spec_manager,
            connection_file=os.path.join(runtime, f"kernel-{kernel_id}.json"),
        )
        manager.shutdown_wait_time = self.shutdown_wait_time
        return ManagedKernel(self, kernel_id, name, manager)

    async def launch(self, kernel: ManagedKernel, cwd: str, env: dict[str, str] | None) -> None:
        """Start `kernel`'s process; on failure clean it up and raise `KernelStartError`."""
        full_env = dict(os.environ)
        full_env.update(env or {})
        try:
            await kernel.start(cwd, full_env)
        except BaseException as e:
            try:
                await kernel.shutdown(now=True, reason="kernel failed to start")
            except Exception as cleanup_error:  # noqa: BLE001 - keep the launch error, not this one
                self.log.debug("Cleanup after failed start of %s: %s", kernel.id, cleanup_error)
            if isinstance(e, Exception):
                self.log.error("Kernel %s (%s) failed to start: %s", kernel.id, kernel.name, e)
                raise KernelStartError(f"Kernel '{kernel.name}' failed to start: {e}") from e
            raise

    def assign_ports(self, manager: Any, renew: bool = False) -> None:
        """Pick a tcp kernel's ports from `kernel_port_range` before its launch (see ports.py).

        `renew`: drop the ports it has (a relaunch on new ports); without a
        range, jupyter_client then picks new ones itself.
        """
        if renew:
            ports.forget(manager)
        if self._port_picker is not None:
            ports.assign(manager, self._port_picker)

    def lower_priority(self, kernel: ManagedKernel) -> None:
        """Apply `kernel_niceness` to a kernel process with a local pid (once it answered).

        Why a few steps and not more: with scheduler autogroups each kernel is
        its own group, weighted 215 at nice 7 (335 at 5, 110 at 10) against
        the server's 1024, and against every other session on the machine.
        An idle server costs the kernels nothing.
        """
        if self.kernel_niceness <= 0:
            return
        pid = kernel.pid
        if pid is None:
            return  # a remote provisioner: its kernels do not share this machine's CPU
        nice = self._renicer.lower(pid, self.kernel_niceness)
        if nice is None:
            self.log.debug("Could not renice kernel %s (pid %s)", kernel.id, pid)

    async def interrupt(self, kernel_id: str) -> None:
        await self.get(kernel_id).interrupt()

    async def restart(self, kernel_id: str) -> dict[str, Any]:
        kernel = self.get(kernel_id)
        await kernel.restart()
        return kernel.model()

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        """Stop a kernel and forget it; `KeyError` if unknown."""
        kernel = self.get(kernel_id)
        self._kernels.pop(kernel_id, None)
        try:
            await kernel.shutdown(now=now)
        finally:
            # The kernel's buffers and ZMQ queues are freed now; give the pages back.
            memory.trim_soon()
        self.log.info("Kernel %s shut down", kernel_id)

    async def remove_dead(self, kernel: ManagedKernel) -> None:
        """Forget a kernel that died past its restart limit, cleaning its files."""
        self._kernels.pop(kernel.id, None)
        try:
            await kernel.shutdown(now=True, reason="kernel died")
        except Exception:
            self.log.exception("Cleaning up dead kernel %s failed", kernel.id)

    async def shutdown_all(self) -> None:
        """Stop every kernel concurrently, pooled and prewarmed ones included (server exit)."""
        self.closing = True
        if self._culler is not None:
            self._culler.cancel()
            self._culler = None
        for task in (self._pool_task, self._prewarm_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await asyncio.gather(*(pool.close() for pool in self._pools.values()))
        kernels = list(self._kernels)
        results = await asyncio.gather(*(self.shutdown_kernel(k) for k in kernels), return_exceptions=True)
        for kernel_id, result in zip(kernels, results):
            if isinstance(result, BaseException) and not isinstance(result, KeyError):
                self.log.error("Shutting down kernel %s failed: %s", kernel_id, result)
        self.read_gate.close()
        if self.admission is not None:
            self.admission.close()
        self._renicer.close()

    # -- culling ---------------------------------------------------------------
    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(max(1, self.cull_interval))
            try:
                await self.cull_once()
            except Exception:
                self.log.exception("Kernel culling failed")

    async def cull_once(self) -> list[str]:
        """Shut down kernels idle past the timeout; returns their ids."""
        now = time.time()
        culled = []
        for kernel_id, kernel in list(self._kernels.items()):
            if kernel.execution_state in ("starting", "restarting"):
                continue  # idle time counts from the first answer (slow starts are not idleness)
            idle = now - kernel.last_activity
            if idle < self.cull_idle_timeout:
                continue
            if kernel.execution_state == "busy" and not self.cull_busy:
                continue
            if kernel.connection_count and not self.cull_connected:
                continue
            self.log.warning("Culling kernel %s (%s): idle %.0fs, %d connections", kernel_id, kernel.name, idle, kernel.connection_count)
            try:
                await self.shutdown_kernel(kernel_id)
                culled.append(kernel_id)
            except KeyError:
                pass
        return culled
