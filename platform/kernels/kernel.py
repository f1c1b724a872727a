"""One running kernel: its jupyter_client manager, its shared sockets and its clients.

Kernel → clients: iopub goes to every client; shell/control/stdin replies go
to the client whose session sent the request (read from the parent header),
or to every client when that session is gone.  With no client connected,
messages go to the replay buffer for the next client.  Bodies are never
decoded: only a status message's header and content are parsed, and the
parent header of non-iopub replies, for routing.

Lifecycle: start, interrupt, restart and shutdown go through
`AsyncKernelManager` (provisioners, interrupt mode, graceful shutdown then
kill of the process group, connection-file cleanup).  A monitor task notices
a dead process and restarts it, at most `restart_limit` times per
`restart_window` seconds; beyond that clients get `status: dead` and the
kernel is removed.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import zmq
from zasperhub.platform.kernels import exit_watch, native
from zasperhub.platform.kernels.codec import FrameError
from zasperhub.platform.kernels.replay import ReplayBuffer
from zasperhub.platform.kernels.signing import Signer
from zasperhub.platform.kernels.zmqio import (
    KernelSockets,
    deliver_frames,
    open_kernel_sockets,
    wait_listening,
)
from zasperhub.platform.web.util import isoformat_z

if TYPE_CHECKING:
    from jupyter_client.manager import AsyncKernelManager
    from zasperhub.platform.kernels.registry import KernelRegistry

log = logging.getLogger("zasperhub.kernels")

PROTOCOL_VERSION = "5.3"
#: Client messages kept while a kernel restarts (more are refused with a log line).
MAX_HELD_MESSAGES = 1000
#: Shell messages one kernel may have waiting for admission (admission.py)
#: before they are all sent to it anyway; all kernels together: `Admission.max_queued`.
MAX_WAITING_MESSAGES = 4096
#: Seconds without a kernel_info reply before the start-up nudge asks again.
NUDGE_RETRY = 1.0
#: Seconds an execute_request's idle waits for its reply (read from the other
#: socket, normally in the same wake-up) before the idle alone settles the request.
REPLY_AFTER_IDLE = 2.0


class Connection(Protocol):
    """What the kernel needs from a client connection (the WebSocket handler)."""

    #: The client's session id (from `?session_id=`), "" if it gave none.
    session_id: str
    #: Its compiled sink (native.py), or None: the native Router delivers only to clients that have one.
    native_sink: Any

    def deliver(self, channel: str, parts: Sequence[bytes]) -> None:
        """Queue a message for the client; must not block.  Sent by `send_queued`."""

    def send_queued(self) -> None:
        """Write what `deliver` queued (the kernel calls it after each batch)."""

    def close_with(self, code: int, reason: str) -> None:
        """Close the connection with a WebSocket close code and reason."""


def _field_is(content: bytes, key: bytes, value: bytes) -> bool:
    """Whether the JSON object `content` has `key` (quoted) followed by `: value`."""
    at = content.find(key)
    while at >= 0:
        rest = content[at + len(key):at + len(key) + 64].lstrip()
        if rest[:1] == b":" and rest[1:].lstrip().startswith(value):
            return True
        at = content.find(key, at + 1)
    return False


def _stops_on_error(content: bytes) -> bool:
    """Whether an execute_request's failure aborts the cells queued behind it (ipykernel's rule:
    unless `stop_on_error` is false or the request is `silent`).  A scan, not a parse: inside
    the JSON string of the code, quotes are escaped, so the code cannot match it.  Two `find`s
    instead of a regular expression: this runs once per execute (~2 % of the server's CPU at
    2 kernels x 10/s was the pattern's scan)."""
    return not (_field_is(content, b'"stop_on_error"', b"false") or _field_is(content, b'"silent"', b"true"))


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def make_message(
    msg_type: str, session: str, content: dict[str, Any], parent: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> list[bytes]:
    """Serialized parts of a message the server itself originates."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "username": "zasperhub",
        "session": session,
        "date": _now_iso(),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
    }
    return [orjson.dumps(header), orjson.dumps(parent or {}), orjson.dumps(metadata or {}), orjson.dumps(content)]


class ManagedKernel:
    """A kernel process plus the bridge state every client of it shares."""

    def __init__(self, registry: KernelRegistry, kernel_id: str, name: str, manager: AsyncKernelManager) -> None:
        self.registry = registry
        self.id = kernel_id
        self.name = name
        self.manager = manager
        self.execution_state = "starting"
        self.last_activity = time.time()
        self.replay = ReplayBuffer(registry.replay_buffer_bytes, registry.replay_buffer_messages, registry.replay_budget)
        # The server's own session: replies to it (the kernel_info nudge) are
        # consumed here and never reach clients.
        self.session = uuid.uuid4().hex
        self._identity = uuid.uuid4().hex.encode("ascii")
        self._connections: dict[int, Connection] = {}
        self._by_session: dict[str, Connection] = {}
        self._sockets: KernelSockets | None = None
        self._signer = Signer(b"")
        self._ready = asyncio.Event()
        self._info_reply = asyncio.Event()
        self._kernel_info_seen = False
        self._iopub_seen = False
        self._nudge_task: asyncio.Task[None] | None = None
        self._monitor_task: asyncio.Task[None] | None = None
        self._restarts: collections.deque[float] = collections.deque()
        # Client messages that arrive while the kernel restarts, sent once it
        # answers again (bounded: beyond it the client is told they were dropped).
        self._held: list[tuple[str, list[bytes]]] = []
        # Execution admission (admission.py): msg_ids of execute_requests sent
        # and not answered yet, and shell messages waiting for a slot (with the
        # msg_id of each execute_request among them).
        self._inflight: dict[str, bool] = {}  # msg_id -> whether its failure aborts what follows
        self._waiting: list[tuple[list[bytes], str | None]] = []
        # Set while overloaded (see `_overload`): the msg_id of the last
        # execute_request sent; admission resumes when it is answered.
        self._overloaded: str | None = None
        self._busy_lifecycle = False  # restarting or shutting down: the monitor stands back
        self.shutting_down = False
        # Server-originated silent executes (pool handoff), by msg_id:
        # [future, reply content or None, idle seen].
        self._silent: dict[str, list[Any]] = {}

    # -- model -------------------------------------------------------------------
    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def pid(self) -> int | None:
        """The kernel process's local pid, if its provisioner has one."""
        pid = getattr(self.manager.provisioner, "pid", None)
        return pid if isinstance(pid, int) else None

    def last_activity_dt(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(self.last_activity, datetime.timezone.utc)

    def model(self) -> dict[str, Any]:
        """The Jupyter kernel model."""
        return {
            "id": self.id,
            "name": self.name,
            "last_activity": isoformat_z(self.last_activity_dt()),
            "execution_state": self.execution_state,
            "connections": len(self._connections),
        }

    # -- lifecycle -----------------------------------------------------------------
    async def start(self, cwd: str, env: dict[str, str]) -> None:
        """Launch the kernel, connect the sockets, start the monitor."""
        self.registry.assign_ports(self.manager)
        await self.manager.start_kernel(cwd=cwd, env=env)
        await wait_listening(self.manager.get_connection_info(session=False))
        self._open_sockets()
        self._monitor_task = asyncio.create_task(self._monitor(), name=f"kernel-monitor-{self.id}")

    def _open_sockets(self) -> None:
        info = self.manager.get_connection_info(session=False)
        key = info.get("key", b"")
        if isinstance(key, str):
            key = key.encode("utf-8")
        scheme = info.get("signature_scheme", "hmac-sha256")
        self._signer = Signer(key, scheme)
        # The compiled path for this kernel's common messages (None where it does not
        # apply); the rest comes back through `_on_kernel_message` (native.py).
        router = native.make_router(self, key, scheme, self.session,
                                    functools.partial(deliver_frames, self._on_kernel_message))
        self._sockets = open_kernel_sockets(
            info,
            self._identity,
            self._on_kernel_message,
            self._flush_clients,
            self.registry.kernel_transport,
            self.registry.read_gate,
            router,
        )
        self._ready.clear()
        self._kernel_info_seen = self._iopub_seen = False
        self._nudge_task = asyncio.create_task(self._nudge(), name=f"kernel-nudge-{self.id}")

    def _close_sockets(self) -> None:
        # New clients wait for the next kernel_info handshake.
        self._ready.clear()
        self._reset_admission()
        if self._nudge_task is not None:
            self._nudge_task.cancel()
            self._nudge_task = None
        if self._sockets is not None:
            router = getattr(self._sockets, "router", None)
            if router is not None:
                fast, slow = router.counts
                log.info("Kernel %s: %d messages routed by the compiled path, %d by Python", self.id, fast, slow)
            self._sockets.close()
            self._sockets = None

    async def _nudge(self) -> None:
        """Ask kernel_info until both the reply and an iopub message arrived.

        A SUB socket only receives once its subscription reached the kernel,
        so seeing iopub traffic proves the shared iopub socket is live.  One
        request is outstanding at a time, re-sent after `NUDGE_RETRY` seconds
        without a reply (fixed, no back-off: a kernel that is up answers in
        milliseconds, and a request sent while it was still starting may be
        lost); stray duplicate replies go to the server's session and are
        dropped here.  A kernel still silent after `kernel_info_timeout` is
        stopped, so the monitor restarts it (or reports it dead).
        """
        deadline = time.monotonic() + self.registry.kernel_info_timeout
        while not self._ready.is_set() and time.monotonic() < deadline:
            if self._sockets is None:
                return
            self._info_reply.clear()
            parts = make_message("kernel_info_request", self.session, {})
            try:
                self._sockets.send("shell", self._signer.sign(parts), parts)
            except (zmq.ZMQError, ConnectionError) as e:
                log.debug("kernel_info nudge to %s failed: %s", self.id, e)
                await asyncio.sleep(0.2)
                continue
            try:
                await asyncio.wait_for(self._info_reply.wait(), min(NUDGE_RETRY, max(0.1, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                continue  # no reply yet: ask again (the loop ends at the deadline)
            if not self._ready.is_set():
                # Replied, but the iopub subscription was not live yet.
                await asyncio.sleep(0.1)
        if self._ready.is_set() or self.shutting_down or self._sockets is None:
            return
        # Alive but deaf, e.g. an ipykernel whose iopub port another process
        # took between the port pick and its bind: it then hangs for ever in
        # Context.term() at exit (the unbound socket is never closed), so the
        # monitor never sees it die.  Stopped here, the monitor restarts it
        # (on new ports: `_on_death`) or, past the restart limit, reports it dead.
        log.warning("Kernel %s did not answer kernel_info within %.0fs; stopping it", self.id, self.registry.kernel_info_timeout)
        provisioner = self.manager.provisioner
        if provisioner is not None and provisioner.has_process:
            try:
                await provisioner.kill()
            except Exception:  # the monitor's liveness check decides what happens next
                log.exception("Stopping unresponsive kernel %s failed", self.id)

    async def wait_ready(self, timeout: float) -> bool:
        """True once the kernel answered; False after `timeout` seconds."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def run_silent(self, code: str, timeout: float) -> dict[str, Any]:
        """Execute `code` as the server, invisibly to clients; returns the execute_reply content.

        `silent: true` makes ipykernel skip the execution count, the
        execute_input broadcast and the displayhook, and `store_history:
        false` keeps it out of In/Out and history.  Its iopub traffic carries
        the server's session as parent, so it is neither replayed nor (since
        this runs before any client attaches) delivered.  Returns once both
        the reply and the iopub `idle` arrived, so nothing of it is in flight
        when a client connects.  `TimeoutError` when the kernel does not answer.
        """
        if self._sockets is None or not self._ready.is_set() or self.shutting_down:
            raise ConnectionError(f"kernel {self.id} is {self.execution_state}")
        content = {"code": code, "silent": True, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}
        parts = make_message("execute_request", self.session, content)
        msg_id = orjson.loads(parts[0])["msg_id"]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._silent[msg_id] = [future, None, False]
        try:
            self._sockets.send("shell", self._signer.sign(parts), parts)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._silent.pop(msg_id, None)

    def _silent_progress(self, channel: str, parts: list[bytes]) -> None:
        """Note a reply or iopub idle answering one of `run_silent`'s requests."""
        try:
            parent_id = orjson.loads(parts[1]).get("msg_id")
        except (orjson.JSONDecodeError, AttributeError):
            return
        entry = self._silent.get(parent_id) if isinstance(parent_id, str) else None
        if entry is None:
            return
        if channel == "shell" and b"execute_reply" in parts[0]:
            try:
                entry[1] = orjson.loads(parts[3])
            except orjson.JSONDecodeError:
                entry[1] = {"status": "error", "ename": "BadReply", "evalue": "unparsable execute_reply"}
        elif channel == "iopub" and b'"status"' in parts[0] and b'"idle"' in parts[3]:
            entry[2] = True
        if entry[1] is not None and entry[2] and not entry[0].done():
            entry[0].set_result(entry[1])

    async def interrupt(self) -> None:
        """Interrupt per the kernelspec's interrupt_mode (signal or message)."""
        if not self._ready.is_set():
            # A SIGINT during interpreter start-up kills the process instead
            # of interrupting anything; a starting kernel runs no user code.
            log.info("Kernel %s is %s; interrupt ignored", self.id, self.execution_state)
            return
        await self.manager.interrupt_kernel()
        self.last_activity = time.time()

    async def restart(self, now: bool = False, new_ports: bool = False) -> None:
        """Restart the kernel process; clients are told `restarting` first.

        `new_ports`: launch on newly picked ports, not the previous ones (the
        old process is then killed, not asked to shut down over its ports).
        """
        self._busy_lifecycle = True
        try:
            self.broadcast_status("restarting")
            self.execution_state = "restarting"
            self._close_sockets()
            if new_ports:
                self.registry.assign_ports(self.manager, renew=True)
            await self.manager.restart_kernel(now=now or new_ports)
            self.execution_state = "starting"
            await wait_listening(self.manager.get_connection_info(session=False))
            self._open_sockets()
        finally:
            self._busy_lifecycle = False
        if not await self.wait_ready(self.registry.kernel_info_timeout):
            log.warning("Kernel %s restarted but is not answering yet", self.id)
        self.last_activity = time.time()

    async def shutdown(self, now: bool = False, reason: str = "kernel shut down") -> None:
        """Close clients and sockets, then stop the process and remove its files."""
        if self.shutting_down:
            return
        self.shutting_down = True
        self._busy_lifecycle = True
        if self._monitor_task is not None and self._monitor_task is not asyncio.current_task():
            self._monitor_task.cancel()
        for conn in list(self._connections.values()):
            conn.close_with(1000, reason)
        self._connections.clear()
        self._by_session.clear()
        self._close_sockets()
        # Wake anyone waiting for readiness; they check `shutting_down`.
        self._ready.set()
        self._held.clear()
        self.replay.clear()
        try:
            await self.manager.shutdown_kernel(now=now)
        finally:
            # shutdown_kernel already removes the connection file; this also
            # covers a failed launch.
            cleaned = self.manager.cleanup_resources(restart=False)
            if inspect.isawaitable(cleaned):
                await cleaned
            self.execution_state = "dead"

    async def _monitor(self) -> None:
        interval = self.registry.poll_interval
        loop = asyncio.get_running_loop()
        unwatchable: int | None = None  # a pid whose pidfd said "exited" while the provisioner said alive
        while not self.shutting_down:
            exited: bool | None = None
            pid = self.pid
            if pid is not None and pid != unwatchable and not self._busy_lifecycle:
                # Asleep until the process exits (exit_watch.py); libzmq sockets still
                # get their periodic poke, on the grid shared by every kernel (below).
                sockets = self._sockets
                poke_in = interval - loop.time() % interval if sockets is not None and sockets.needs_poke else None
                exited = await exit_watch.wait_exit(pid, poke_in)
                if exited is False:
                    if self._sockets is not None:
                        self._sockets.poke()
                    continue
            if exited is None:
                # Polled: on a grid shared by every kernel, so all monitors run
                # in one wake-up of the loop per interval, not one per kernel.
                await asyncio.sleep(interval - loop.time() % interval)
            if self._busy_lifecycle:
                continue
            if exited is None and self._sockets is not None:
                self._sockets.poke()
            try:
                alive = await self.manager.is_alive()
            except Exception:  # a provisioner failing to poll counts as death
                log.exception("Polling kernel %s failed", self.id)
                alive = False
            if alive and exited and pid == self.pid:
                # The provisioner's `pid` is not the process it polls: poll this one.
                unwatchable = pid
            if not alive and not self._busy_lifecycle and not self.shutting_down:
                await self._on_death()

    async def _on_death(self) -> None:
        now = time.monotonic()
        window = self.registry.restart_window
        while self._restarts and now - self._restarts[0] > window:
            self._restarts.popleft()
        if len(self._restarts) < self.registry.restart_limit:
            self._restarts.append(now)
            log.warning("Kernel %s died; restarting (%d of %d within %.0fs)", self.id, len(self._restarts), self.registry.restart_limit, window)
            try:
                # Dead before it ever answered: one of its ports may belong to
                # another process now (see `_nudge`), so the same ports would fail again.
                await self.restart(now=True, new_ports=not self._ready.is_set())
                return
            except Exception:
                log.exception("Restarting dead kernel %s failed", self.id)
        log.error("Kernel %s died and will not be restarted", self.id)
        self.execution_state = "dead"
        self.broadcast_status("dead")
        await self.registry.remove_dead(self)

    # -- clients ---------------------------------------------------------------------
    def attach(self, conn: Connection) -> None:
        """Add a client; a client with the same session replaces the old one.

        Messages buffered while nobody was connected are replayed to it.
        """
        if conn.session_id:
            old = self._by_session.get(conn.session_id)
            if old is not None and old is not conn:
                log.info("Replacing connection to kernel %s for session %s", self.id, conn.session_id)
                self.detach(old)
                old.close_with(1000, "replaced by a newer connection with the same session")
            self._by_session[conn.session_id] = conn
        self._connections[id(conn)] = conn
        self.last_activity = time.time()
        if len(self.replay):
            entries, dropped = self.replay.drain()
            if dropped:
                log.warning("Kernel %s: %d buffered messages were dropped (replay buffer full)", self.id, dropped)
            log.info("Kernel %s: replaying %d buffered messages", self.id, len(entries))
            for channel, parts in entries:
                conn.deliver(channel, parts)
            conn.send_queued()

    def detach(self, conn: Connection) -> None:
        """Forget a client (idempotent)."""
        if self._connections.pop(id(conn), None) is None:
            return
        for session, c in list(self._by_session.items()):
            if c is conn:
                del self._by_session[session]

    def send_from_client(self, conn: Connection, channel: str, parts: list[bytes]) -> None:
        """Sign and forward a client's message; raises `FrameError` if it is unusable."""
        if channel == "iopub":
            raise FrameError("clients cannot send on the iopub channel")
        try:
            header = orjson.loads(parts[0])
        except orjson.JSONDecodeError as e:
            raise FrameError(f"message header is not valid JSON: {e}") from None
        if not isinstance(header, dict) or not isinstance(header.get("msg_type"), str):
            raise FrameError("message header must be an object with a msg_type")
        session = header.get("session")
        if isinstance(session, str) and session and session != self.session and self._by_session.get(session) is not conn:
            # Clients without ?session_id= are routed by their messages' session.
            self._by_session[session] = conn
        if self._sockets is None or not self._ready.is_set():
            if self.shutting_down or self.execution_state == "dead":
                raise ConnectionError(f"kernel is {self.execution_state}; message dropped")
            if len(self._held) >= MAX_HELD_MESSAGES:
                raise ConnectionError(f"kernel is {self.execution_state} and {MAX_HELD_MESSAGES} messages are waiting; message dropped")
            self._held.append((channel, [bytes(p) for p in parts]))
            return
        sockets = self._sockets
        execute_id = None
        admission = self.registry.admission
        if admission is not None and channel == "shell" and "subshell_id" not in header:
            if header["msg_type"] == "execute_request":
                msg_id = header.get("msg_id")
                execute_id = msg_id if isinstance(msg_id, str) and msg_id else None
            if self._overloaded is not None:
                # Straight to the kernel's own queue until it has answered the last of it.
                if execute_id is not None:
                    self._overloaded, execute_id = execute_id, None
            elif len(self._waiting) >= MAX_WAITING_MESSAGES or admission.queued >= admission.max_queued:
                # Overload: the kernel's own queue takes over, as without
                # admission (order kept, nothing dropped, server memory bounded).
                self._overload()
                if execute_id is not None:
                    self._overloaded, execute_id = execute_id, None
            # Behind what waits already; behind what the kernel executes (sent
            # as one batch when it has answered); or for a slot, if idle.
            elif self._waiting or (execute_id is not None and (self._inflight or not admission.try_acquire(self))):
                self._waiting.append(([bytes(p) for p in parts], execute_id))
                admission.queued += 1
                if not self._inflight:
                    admission.wait(self)
                return
        try:
            sockets.send(channel, self._signer.sign(parts), parts)
        except zmq.Again:
            raise ConnectionError("kernel is not reading its input; message dropped") from None
        if execute_id is not None:
            self._inflight[execute_id] = _stops_on_error(parts[3])
        self.last_activity = time.time()
        # Outputs are coming, then an answer: read them in one wake-up (coalesce.py).
        self.registry.read_gate.hold_for_reply(sockets)

    def admit(self) -> bool:
        """Admission gave this kernel a slot: send it every waiting message in one batch."""
        waiting, self._waiting = self._waiting, []
        self._dequeued(len(waiting))
        sockets = self._sockets
        if sockets is None:
            return bool(self._inflight)
        for parts, execute_id in waiting:
            if self._send_kept(sockets, "shell", parts, "waiting") and execute_id is not None:
                self._inflight[execute_id] = _stops_on_error(parts[3])
        if waiting:
            self.last_activity = time.time()
            self.registry.read_gate.hold_for_reply(sockets)
        return bool(self._inflight)

    def _dequeued(self, count: int) -> None:
        if count and self.registry.admission is not None:
            self.registry.admission.queued -= count

    def _overload(self) -> None:
        """More is waiting than the bound: send it all and stop tracking until the kernel catches up."""
        assert self.registry.admission is not None
        self.registry.admission.forget(self)
        self.admit()
        self._overloaded = next(reversed(self._inflight), "")  # the last one sent
        self._inflight.clear()  # memory stays bounded however far behind the kernel falls
        log.info("Kernel %s: too many shell messages waiting; sending them on without admission", self.id)

    def _answered(self, msg_id: Any, reply_header: bytes, content: bytes) -> None:
        """The request `msg_id` was answered (`content` is the reply's, b"{}" when only its idle
        came): once every request sent is answered, the kernel frees its slot, and what waited
        behind them asks for one."""
        if self._overloaded is not None:
            if msg_id == self._overloaded:
                self._overloaded = None  # the kernel has caught up: admission again
            return
        stops = self._inflight.pop(msg_id, None) if isinstance(msg_id, str) else None
        if stops and self._waiting and b'"error"' in content:
            try:
                failed = orjson.loads(content).get("status") == "error"
            except (orjson.JSONDecodeError, AttributeError):
                failed = False
            if failed:
                self._abort_waiting(reply_header)
        admission = self.registry.admission
        if not self._inflight and admission is not None:
            admission.release(self)
            if self._waiting:
                admission.wait(self)

    def _abort_waiting(self, reply_header: bytes) -> None:
        """A cell failed: answer the execute_requests waiting behind it `aborted`, as the kernel
        would have had they been in its queue (ipykernel's stop_on_error)."""
        try:
            session = orjson.loads(reply_header).get("session") or self.session
        except (orjson.JSONDecodeError, AttributeError):
            session = self.session
        kept: list[tuple[list[bytes], str | None]] = []
        for parts, execute_id in self._waiting:
            if execute_id is None:
                kept.append((parts, execute_id))
                continue
            try:
                request = orjson.loads(parts[0])
            except orjson.JSONDecodeError:
                continue
            for channel, msg_type, content in (
                ("iopub", "status", {"execution_state": "busy"}),
                ("shell", "execute_reply", {"status": "aborted"}),
                ("iopub", "status", {"execution_state": "idle"}),
            ):
                metadata = {"status": "aborted"} if channel == "shell" else None
                self._route(channel, make_message(msg_type, session, content, request, metadata))
        self._dequeued(len(self._waiting) - len(kept))
        self._waiting = kept
        self._flush_clients()

    def _reset_admission(self) -> None:
        # The process behind the queue is gone (restart, shutdown): what it was
        # executing is lost with it, and so is what waited to reach it, as the
        # kernel's own queue would have been.
        if self._waiting:
            log.warning("Kernel %s: %d shell messages waiting for an execution slot were dropped", self.id, len(self._waiting))
        self._dequeued(len(self._waiting))
        self._waiting.clear()
        self._inflight.clear()
        self._overloaded = None
        if self.registry.admission is not None:
            self.registry.admission.forget(self)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for channel, parts in held:
            if self._sockets is None:
                return
            self._send_kept(self._sockets, channel, parts, "held")

    def _send_kept(self, sockets: KernelSockets, channel: str, parts: list[bytes], why: str) -> bool:
        """Sign and send a message the server kept back (`why`: held, waiting); False, logged, if not taken."""
        try:
            sockets.send(channel, self._signer.sign(parts), parts)
        except (zmq.ZMQError, ConnectionError) as e:
            log.warning("Kernel %s: a %s %s message was not delivered: %s", self.id, why, channel, e)
            return False
        return True

    def broadcast_status(self, state: str) -> None:
        """Tell every client the kernel's execution state (restarting, dead)."""
        parts = make_message("status", self.session, {"execution_state": state})
        for conn in list(self._connections.values()):
            conn.deliver("iopub", parts)
        self._flush_clients()

    def _flush_clients(self) -> None:
        for conn in list(self._connections.values()):
            sink = conn.native_sink
            if sink is not None:
                sink.flush()  # all send_queued would do for it
            else:
                conn.send_queued()

    # -- kernel → clients ----------------------------------------------------------------
    def _on_kernel_message(self, channel: str, frames: list[bytes]) -> None:
        if len(frames) < 5:
            log.warning("Kernel %s sent a %s message with %d parts; dropped", self.id, channel, len(frames))
            return
        signature = frames[0]
        parts = frames[1:]
        if not self._signer.verify(signature, parts):
            log.warning("Kernel %s sent a %s message with a bad signature; dropped", self.id, channel)
            return
        self.last_activity = time.time()
        if self._silent:
            self._silent_progress(channel, parts)
        parent = self._route(channel, parts)
        # After routing: a failed cell's reply reaches its client before the
        # `aborted` answers for the cells that waited behind it.
        if parent and (self._inflight or self._overloaded is not None) and channel == "shell" and b"execute_reply" in parts[0]:
            self._answered(parent.get("msg_id"), parts[0], parts[3])

    def _route(self, channel: str, parts: list[bytes]) -> dict[str, Any] | None:
        """Deliver a verified kernel message (or one the server answers for it) to its clients.

        Returns the parent header it parsed to route a reply (None for iopub).
        """
        if channel == "iopub":
            self._iopub_seen = True
            if self._kernel_info_seen and not self._ready.is_set():
                self._set_ready()
            if b'"status"' in parts[0]:
                self._track_status(parts)
            if self._connections:
                for conn in list(self._connections.values()):
                    conn.deliver(channel, parts)
            elif len(parts[1]) > 2 and not self._from_server_session(parts[1]):
                # Parentless messages (the kernel's own `starting` status) are
                # stale by the time anyone connects; the rest answers requests
                # whose senders may come back.
                self.replay.add(channel, parts)
            return None
        parent = self._parent_header(parts[1])
        parent_session = parent.get("session")
        if parent_session == self.session:
            if channel == "shell" and b"kernel_info_reply" in parts[0]:
                self._kernel_info_seen = True
                self._info_reply.set()
                if self._iopub_seen and not self._ready.is_set():
                    self._set_ready()
            return parent
        target = self._by_session.get(parent_session) if isinstance(parent_session, str) else None
        if target is not None:
            target.deliver(channel, parts)
        elif self._connections:
            for conn in list(self._connections.values()):
                conn.deliver(channel, parts)
        else:
            self.replay.add(channel, parts)
        return parent

    def _set_ready(self) -> None:
        # Start-up runs at the server's priority (it is what the user waits
        # for); from its first answer on, the kernel yields to the server.
        try:
            self.registry.lower_priority(self)
        except Exception:  # the kernel must become usable regardless
            log.exception("Lowering the priority of kernel %s failed", self.id)
        self._ready.set()
        if self._held:
            self._release_held()

    def _from_server_session(self, parent: bytes) -> bool:
        return bool(parent) and self.session.encode("ascii") in parent and self._parent_header(parent).get("session") == self.session

    @staticmethod
    def _parent_header(parent: bytes) -> dict[str, Any]:
        """A message's parent header, {} when it has none or it is not a JSON object."""
        if len(parent) <= 2:
            return {}
        try:
            value = orjson.loads(parent)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def _track_status(self, parts: list[bytes]) -> None:
        try:
            header = orjson.loads(parts[0])
            if header.get("msg_type") != "status":
                return
            state = orjson.loads(parts[3]).get("execution_state")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(state, str):
            self.execution_state = state
        if state == "idle" and (self._inflight or self._overloaded is not None):
            # Normally the reply came first and settled it; if the reply was
            # lost (a dropped connection), the idle still ends the wait.
            msg_id = self._parent_header(parts[1]).get("msg_id")
            if not isinstance(msg_id, str):
                return  # not the idle of a request sent through the server
            if self._inflight.get(msg_id) and self._waiting:
                # Whether what waits runs or is aborted depends on the reply,
                # which the kernel sent first but the server may read second.
                asyncio.get_running_loop().call_later(REPLY_AFTER_IDLE, self._reply_missing, msg_id, parts[0])
            elif msg_id in self._inflight or msg_id == self._overloaded:
                self._answered(msg_id, parts[0], b"{}")

    def _reply_missing(self, msg_id: str, idle_header: bytes) -> None:
        if msg_id in self._inflight:
            log.warning("Kernel %s: no execute_reply for %s after its idle; settling it as answered", self.id, msg_id)
            self._answered(msg_id, idle_header, b"{}")
