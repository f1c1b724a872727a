"""One kernel's ZMQ sockets, read straight from the event loop without per-message futures.

Which implementation a kernel gets is chosen by `open_kernel_sockets`: the
asyncio ZMTP transport (zmtp.py) for tcp and ipc kernels by default, these pyzmq
sockets for CurveZMQ-encrypted kernels or when asked for
(`--KernelRegistry.kernel_transport=pyzmq` or `ZASPERHUB_KERNEL_TRANSPORT=pyzmq`).

The sockets are plain (non-asyncio) pyzmq sockets used with NOBLOCK; the
loop watches each socket's notification fd and, when it fires, drains
messages in batches.  That avoids allocating a future and a poller wake-up
per message, which is most of the cost of `zmq.asyncio` under load.

ZMQ's fd is edge-triggered: it fires when the socket's state changes, not
while messages wait.  So a drain always continues until `zmq.Again`
(re-scheduling itself after a batch to stay fair to other kernels), and after
every send the socket's `EVENTS` is checked, because a send can consume the
edge that announced pending input.

Cost notes (see benchmarks/results/cpu.md): every `getsockopt(EVENTS)` makes
libzmq process its command mailbox (a `poll` and a `getpid` syscall), so the
drain does not ask it per message — a failed non-blocking `recv` processes
the mailbox the same way before reporting `Again`, once per drain.  Sends and
receives call pyzmq's compiled socket methods directly: the Python-level
wrapper only adds argument checks for features not used here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zasperhub.platform.kernels.coalesce import Holdable, ReadGate
from zmq.backend import Socket as _BackendSocket

log = logging.getLogger("zasperhub.kernels")

DELIMITER = b"<IDS|MSG>"

#: Messages handled per wake-up before yielding to the loop.
_BATCH = 256
#: Parts larger than this are sent without copying.
_ZERO_COPY_THRESHOLD = 65536

# Plain ints: pyzmq's flag enums cost a Python-level enum operation per use.
_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)

# The compiled methods under pyzmq's Python `Socket` wrapper (see module notes).
_send = _BackendSocket.send
_recv = _BackendSocket.recv

#: (channel, [signature, header, parent, metadata, content, *buffers])
MessageCallback = Callable[[str, list[bytes]], None]


def deliver_frames(on_message: MessageCallback, channel: str, frames: list[bytes]) -> None:
    """Strip the routing prefix of a kernel message and hand the rest to `on_message`.

    Shared by both transports; a bad message is logged and dropped, never
    allowed to stop the reader.
    """
    try:
        index = frames.index(DELIMITER)
    except ValueError:
        log.warning("Dropping %s message without delimiter from kernel", channel)
        return
    try:
        on_message(channel, frames[index + 1 :])
    except Exception:
        log.exception("Error handling %s message from kernel", channel)


def tcp_host(info: dict[str, Any]) -> str:
    """The address to reach a tcp kernel at (a kernel bound to every interface is reached locally)."""
    ip = info.get("ip", "127.0.0.1")
    return "127.0.0.1" if ip in ("0.0.0.0", "") else ip


def curve_keys(info: dict[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    """(server key, public key, secret key) of a CurveZMQ-encrypted kernel, else None."""
    public, secret = info.get("curve_publickey"), info.get("curve_secretkey")
    if not public or not secret:
        return None
    public = public.encode("ascii") if isinstance(public, str) else public
    secret = secret.encode("ascii") if isinstance(secret, str) else secret
    return public, public, secret


#: Kernel transports (jupyter_client's `transport`) whose channels are stream sockets ZMTP can speak over.
STREAM_TRANSPORTS = ("tcp", "ipc")


def ipc_path(info: dict[str, Any], channel: str) -> str:
    """The Unix socket an ipc kernel's channel listens on (libzmq's `ipc://{ip}-{port}`)."""
    return f"{info['ip']}-{info[f'{channel}_port']}"


def channel_url(info: dict[str, Any], channel: str) -> str:
    """The ZMQ endpoint of a channel from a kernel's connection info."""
    transport = info.get("transport", "tcp")
    if transport == "tcp":
        ip = tcp_host(info)
        if ":" in ip:
            ip = f"[{ip}]"
        return f"tcp://{ip}:{info[f'{channel}_port']}"
    return f"{transport}://{ipc_path(info, channel)}"


class KernelSockets(Holdable):
    """shell/control/stdin DEALERs and an iopub SUB, shared by every client of a kernel."""

    CHANNELS = ("shell", "control", "stdin", "iopub")

    def __init__(
        self,
        info: dict[str, Any],
        identity: bytes,
        on_message: MessageCallback,
        on_batch_end: Callable[[], None],
        gate: ReadGate | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        # Called once per drained batch, so clients get one write per batch.
        self._on_batch_end = on_batch_end
        super().__init__(gate)
        self._fds: dict[str, int] = {}
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.sockets: dict[str, zmq.Socket] = {}
        curve = curve_keys(info)
        for channel in self.CHANNELS:
            sock = ctx.socket(zmq.SUB if channel == "iopub" else zmq.DEALER)
            sock.linger = 0
            if channel == "iopub":
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                # The kernel drops iopub messages beyond the HWM for slow
                # subscribers; 0 (unbounded) here would let a runaway kernel
                # grow the server — the bridge itself applies byte caps.
                sock.rcvhwm = 100_000
            else:
                # The kernel addresses stdin requests to the shell socket's
                # identity, so shell and stdin (and control) share one.
                sock.setsockopt(zmq.IDENTITY, identity)
                sock.sndhwm = 10_000
            if curve is not None:
                # CurveZMQ (jupyter_client's transport_encryption): the kernel's
                # keypair authenticates it, as jupyter_client's own clients do.
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
            sock.connect(channel_url(info, channel))
            self.sockets[channel] = sock
            self._fds[channel] = fd = int(sock.getsockopt(zmq.FD))
            self._loop.add_reader(fd, self._drain, channel)

    def hold(self) -> None:
        """Stop watching iopub (see coalesce.py); libzmq keeps queueing its messages."""
        self.held = True
        self._loop.remove_reader(self._fds["iopub"])

    def release(self) -> None:
        """Read the iopub messages that queued while held, then watch iopub again."""
        self.held = False
        if self.closed:
            return
        self._loop.add_reader(self._fds["iopub"], self._drain, "iopub")
        # Edge-triggered fd: an edge that fired while held is gone, so drain now.
        got = self._drain_batch("iopub")
        if got and not self.closed and not self.answering:
            self._batch_end("iopub")

    def _drain(self, channel: str) -> None:
        if self.closed:
            return
        if channel == "iopub":
            if self.held:
                return
        elif self.held:
            # The kernel answered: its held outputs go to clients first.
            self.answer_arrived()
            if self.closed:
                return
        got = self._drain_batch(channel)
        if self.closed:
            return
        self._batch_end(channel)
        if got and channel == "iopub" and self.gate is not None:
            self.gate.after_output(self)

    def _batch_end(self, channel: str) -> None:
        try:
            self._on_batch_end()
        except Exception:
            log.exception("Error flushing %s messages to clients", channel)

    def _drain_batch(self, channel: str) -> int:
        """Receive and deliver up to a batch of messages; how many arrived."""
        sock = self.sockets[channel]
        for n in range(_BATCH):
            try:
                # Receive until zmq.Again: one exception per wake-up is
                # cheaper than an EVENTS query (two syscalls) per message.
                # Frames report `more` themselves; getsockopt(RCVMORE) per
                # part costs an enum lookup each in pyzmq.
                frame = _recv(sock, _NOBLOCK, False)
                parts = [frame.bytes]
                while frame.more:
                    frame = _recv(sock, _NOBLOCK, False)
                    parts.append(frame.bytes)
            except zmq.Again:
                return n
            except zmq.ZMQError as e:
                if not self.closed:
                    log.warning("Receiving on %s failed: %s", channel, e)
                return n
            deliver_frames(self._on_message, channel, parts)
            if self.closed:
                return n + 1
        self._loop.call_soon(self._drain, channel)
        return _BATCH

    #: libzmq's edge-triggered FD can miss an edge: the kernel monitor pokes these sockets once a second.
    needs_poke = True

    def poke(self) -> None:
        """Drain any socket with pending input (insurance against a missed edge)."""
        if self.closed:
            return
        for channel, sock in self.sockets.items():
            if channel == "iopub" and self.held:
                continue
            try:
                if int(sock.getsockopt(_EVENTS)) & _POLLIN:
                    self._drain(channel)
            except zmq.ZMQError:
                pass

    def send(self, channel: str, signature: bytes, parts: Sequence[bytes]) -> None:
        """Send [delimiter, signature, *parts]; raises `zmq.Again` if the kernel's queue is full."""
        if self.closed:
            raise ConnectionError("kernel sockets are closed")
        sock = self.sockets[channel]
        # The first part is queued only if the whole message can be (ZMQ
        # sends multipart messages atomically), so a full queue raises
        # zmq.Again here and nothing partial is left behind.
        more = _NOBLOCK | _SNDMORE
        _send(sock, DELIMITER, more)
        _send(sock, signature, more)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            _send(sock, part, _NOBLOCK if i == last else more, len(part) < _ZERO_COPY_THRESHOLD)
        if int(sock.getsockopt(_EVENTS)) & _POLLIN:
            self._loop.call_soon(self._drain, channel)

    def close(self) -> None:
        """Stop reading and close every socket (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for fd in self._fds.values():
            try:
                self._loop.remove_reader(fd)
            except (ValueError, RuntimeError):
                pass
        for sock in self.sockets.values():
            sock.close(linger=0)
        self.sockets.clear()
        self._fds.clear()


async def wait_listening(info: dict[str, Any], timeout: float = 30.0) -> None:
    """Return once the kernel listens on every channel port (or after `timeout`).

    A connect retried against a port the starting kernel has not bound yet
    can draw that very port as its ephemeral source port and connect to
    itself.  The kernel's later bind still succeeds (ZMQ sets SO_REUSEADDR
    and nothing listens there), so a libzmq socket stays "connected" to
    itself and the kernel's messages for it are dropped — seen as a lost
    stdin `input_request`.  Connecting the real sockets only after the
    ports listen rules that out; a probe that self-connects is released at
    once (zero linger) and retried.  An ipc kernel is waited for the same way
    on its Unix sockets: libzmq connecting before the kernel binds retries on
    its own, but a stdin request sent before that retry is lost.
    """
    kind = info.get("transport", "tcp")
    if kind not in STREAM_TRANSPORTS:
        return
    host = tcp_host(info)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for channel in ("shell", "iopub", "stdin", "control"):
        while loop.time() < deadline:
            try:
                if kind == "ipc":
                    _, writer = await asyncio.open_unix_connection(ipc_path(info, channel))
                else:
                    _, writer = await asyncio.open_connection(host, int(info[f"{channel}_port"]))
            except OSError:  # not bound yet (for ipc: no file, or a stale one nobody listens on)
                await asyncio.sleep(0.02)
                continue
            sock = writer.get_extra_info("socket")
            mine = kind == "tcp" and sock is not None and sock.getsockname() == sock.getpeername()
            if mine:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            if not mine:
                break
    # Past the deadline the sockets connect anyway; the nudge reports a kernel that never answers.


#: Kernel transports `open_kernel_sockets` knows.
TRANSPORTS = ("pyzmq", "zmtp")
#: ZMTP by default: with the read gate it needs 0.86 ms of server CPU per
#: `2+2` round trip against pyzmq's 1.36 (benchmarks/results/cpu.md).  The
#: kernels that "never became ready" over it were kernels whose port another
#: process took before they bound it (tests/kernels/test_zmtp_ports.py), as
#: happens over pyzmq too; kernel ports now come from below the ephemeral
#: range (ports.py) and a deaf kernel is restarted on new ports.
DEFAULT_TRANSPORT = "zmtp"


def open_kernel_sockets(
    info: dict[str, Any],
    identity: bytes,
    on_message: MessageCallback,
    on_batch_end: Callable[[], None],
    transport: str | None = None,
    gate: ReadGate | None = None,
    router: Any = None,
) -> Any:
    """A kernel's channel sockets over the chosen transport (`KernelSockets` or `ZMTPKernelSockets`).

    `transport` None means the `ZASPERHUB_KERNEL_TRANSPORT` environment
    variable, else `DEFAULT_TRANSPORT`.  "zmtp" (asyncio sockets, see zmtp.py)
    applies to tcp and ipc kernels without CurveZMQ.  `router`
    (native.py) is used by the ZMTP transport only.
    """
    choice = transport or os.environ.get("ZASPERHUB_KERNEL_TRANSPORT", "") or DEFAULT_TRANSPORT
    if choice not in TRANSPORTS:
        raise ValueError(f"unknown kernel transport {choice!r}; choose one of {', '.join(TRANSPORTS)}")
    # ZMTP here speaks the NULL mechanism only: encrypted kernels go through libzmq.
    if choice == "zmtp" and info.get("transport", "tcp") in STREAM_TRANSPORTS and curve_keys(info) is None:
        from zasperhub.platform.kernels.zmtp import ZMTPKernelSockets

        return ZMTPKernelSockets(info, identity, on_message, on_batch_end, gate, router)
    return KernelSockets(info, identity, on_message, on_batch_end, gate)
