"""One kernel's channels spoken as ZMTP 3.0 (NULL mechanism) straight over asyncio TCP or Unix sockets.

One of the two kernel transports (`zmqio.open_kernel_sockets`
chooses), with the same interface as `zmqio.KernelSockets`.  With
pyzmq every kernel message crosses two threads: libzmq's I/O thread reads the
TCP socket, then signals the event loop thread through a mailbox (an eventfd
write, a wake-up, and `poll`/`getpid` calls when the loop thread processes
the mailbox); every send takes the opposite path.  Here the event loop reads
and writes the TCP connections itself, so a kernel message costs one wake-up
of one thread.  benchmarks/results/cpu.md has the measurements that justify
the deviation from "use pyzmq for ZMQ sockets".

Scope, deliberately small: the client side of the four kernel channels
(DEALER for shell/control/stdin, SUB subscribed to everything for iopub),
over TCP or, for ipc kernels, the Unix socket libzmq binds at
`{ip}-{port}` (the same framing on a stream socket), and the NULL security mechanism, which
is what Jupyter kernels use (messages are authenticated by their HMAC).
Wire format (ZMTP 3.0, RFC 23): a 64-byte greeting, a READY command carrying
`Socket-Type` and, for DEALERs, `Identity`; then frames of
`flags | size (1 or 8 bytes, big-endian) | body` where flag 0x01 is MORE,
0x02 LONG and 0x04 COMMAND.  A SUB subscribes with a message frame
`0x01 + prefix` (the ZMTP 3.0 form every libzmq 4 publisher accepts).

Like libzmq: connecting retries until the kernel listens, a dropped
connection is re-established, a connection that does not complete the
handshake in time is dropped and retried (`HANDSHAKE_TIMEOUT`), and messages
sent before the handshake wait (bounded by `MAX_PENDING_BYTES`, beyond which
`send` raises `zmq.Again`).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zasperhub.platform.kernels import native
from zasperhub.platform.kernels.coalesce import Holdable, ReadGate
from zasperhub.platform.kernels.iopub_poll import ENDED, READABLE, IopubPoller, poller_for
from zasperhub.platform.kernels.zmqio import (
    DELIMITER,
    STREAM_TRANSPORTS,
    MessageCallback,
    deliver_frames,
    ipc_path,
    tcp_host,
)

log = logging.getLogger("zasperhub.kernels")

#: Outgoing bytes a channel may hold (unsent to the kernel) before `send` refuses.
MAX_PENDING_BYTES = 64 * 1024 * 1024
#: Seconds between connection attempts while the kernel is not listening (libzmq's default).
RECONNECT_INTERVAL = 0.1
#: Seconds a new connection may take to complete the ZMTP handshake (greeting
#: and READY) before it is dropped and retried.  libzmq does the same
#: (ZMQ_HANDSHAKE_IVL, 30 s by default); without it a connection to a peer
#: that accepts but never greets would hold the channel forever.  A kernel's
#: libzmq I/O thread greets within milliseconds even on a loaded machine, and
#: the server's kernel_info nudge gives a starting kernel 60 s: 10 s leaves
#: room for a retry inside that.
HANDSHAKE_TIMEOUT = 10.0
#: A frame length beyond this means a corrupt stream, not a real output: the
#: connection is reset instead of waiting for bytes that will never come.
MAX_FRAME_BYTES = 1 << 32

_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes((3, 0)) + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31
_PEER_TYPES = {"DEALER": {b"ROUTER"}, "SUB": {b"PUB", b"XPUB"}}


class ProtocolError(Exception):
    """The peer does not speak ZMTP 3 with the NULL mechanism as expected."""


def encode_frame(body: bytes, flags: int = 0) -> list[bytes]:
    """One ZMTP frame as [header, body] (the body is not copied)."""
    size = len(body)
    if size > 255:
        return [struct.pack("!BQ", flags | _LONG, size), body]
    return [bytes((flags, size)), body]


def encode_message(parts: Sequence[bytes]) -> list[bytes]:
    """A multipart message as a list of header and body pieces."""
    pieces: list[bytes] = []
    last = len(parts) - 1
    for i, part in enumerate(parts):
        pieces += encode_frame(part, _MORE if i < last else 0)
    return pieces


def ready_command(socket_type: str, identity: bytes | None) -> bytes:
    """The READY command frame with the socket's metadata."""
    props = [(b"Socket-Type", socket_type.encode("ascii"))]
    if identity is not None:
        props.append((b"Identity", identity))
    body = b"\x05READY" + b"".join(bytes((len(k),)) + k + struct.pack("!I", len(v)) + v for k, v in props)
    return b"".join(encode_frame(body, _COMMAND))


def parse_properties(data: bytes) -> dict[bytes, bytes]:
    """Metadata properties of a READY command body (after the command name)."""
    props: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        klen = data[pos]
        key = data[pos + 1 : pos + 1 + klen]
        pos += 1 + klen
        if pos + 4 > len(data):
            raise ProtocolError("truncated READY metadata")
        vlen = int.from_bytes(data[pos : pos + 4], "big")
        props[key.lower()] = data[pos + 4 : pos + 4 + vlen]
        pos += 4 + vlen
    return props


async def _resolve(loop: asyncio.AbstractEventLoop, host: str, port: int) -> tuple[int, Any]:
    """(family, address) to connect to; a numeric IP (the usual kernel `ip`) needs no resolver thread."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))[0]
        return family, address
    return (socket.AF_INET6, (host, port)) if ip.version == 6 else (socket.AF_INET, (host, port))


class _Link(asyncio.Protocol):
    """One TCP connection of a channel; the channel outlives its connections (reconnects)."""

    def __init__(self, channel: _Channel, sock: socket.socket) -> None:
        self.channel = channel
        # Our own reference to the connection's socket: while the transport is
        # paused, `_Channel.read_now` reads it directly (the read gate).
        self.sock = sock
        self.transport: asyncio.Transport | None = None
        # Set once the channel adopted this connection, even if it is lost
        # again before the connector resumes: that connector is then done.
        self.adopted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.channel.attach(self, transport)

    def data_received(self, data: bytes) -> None:
        if self.channel.link is self:
            self.channel.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.channel.detach(self, exc)


class _Channel:
    """One channel: handshake, framing, reconnects."""

    def __init__(self, owner: ZMTPKernelSockets, channel: str, host: str, port: int, socket_type: str,
                 identity: bytes | None, path: str | None = None) -> None:
        self.owner = owner
        self.channel = channel
        self.host = host
        self.port = port
        #: An ipc kernel's Unix socket for this channel (None: TCP to host:port).
        self.path = path
        #: Where the kernel listens, for log lines.
        self.where = path or f"{host}:{port}"
        self.socket_type = socket_type
        self.identity = identity
        self.transport: asyncio.Transport | None = None
        self.link: _Link | None = None
        self.ready = False
        self.closed = False
        # Messages queued before the handshake completed: (pieces, size).
        self.pending: list[list[bytes]] = []
        self.pending_bytes = 0
        self._buf = bytearray()
        self._need = 0  # bytes the buffer must hold before parsing is worth trying
        self._greeted = False
        self._parts: list[bytes] = []
        # After the handshake, with a Router (native.py): the compiled frame reader.
        self._reader: Any = None
        # An iopub connection after its handshake is read through iopub_poll.py (its transport paused):
        # the poller and the descriptor registered with it.
        self._poller: IopubPoller | None = None
        self._polled_fd = -1
        self._connector: asyncio.Task[None] | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None

    # -- connection management -----------------------------------------------------
    def start(self, delay: float = 0.0) -> None:
        self._connector = asyncio.get_running_loop().create_task(self._connect(delay), name=f"zmtp-{self.channel}")

    async def _connect(self, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        if delay:
            await asyncio.sleep(delay)
        while not self.closed:
            try:
                if self.path is not None:
                    family, address = socket.AF_UNIX, self.path
                else:
                    family, address = await _resolve(loop, self.host, self.port)
                sock = socket.socket(family, socket.SOCK_STREAM)
                try:
                    sock.setblocking(False)
                    await loop.sock_connect(sock, address)
                    _, link = await loop.create_connection(functools.partial(_Link, self, sock), sock=sock)
                except BaseException:
                    sock.close()
                    raise
                if link.adopted:
                    # Adopted; if it was already lost, `detach` started a new
                    # connector — two would keep opening competing connections.
                    return
                # Refused in `attach` (a self-connect): try again.
            except OSError:
                pass
            await asyncio.sleep(RECONNECT_INTERVAL)

    def attach(self, link: _Link, transport: asyncio.Transport) -> None:
        """Adopt a new connection (or refuse it), and start the handshake."""
        if self.closed or self.link is not None:
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None and self.path is None and sock.getsockname() == sock.getpeername():
            # TCP self-connect: retrying a port nobody listens on yet can draw
            # that same port as the ephemeral source port, and the socket then
            # connects to itself — holding the port the starting kernel is
            # about to bind (it dies with "Address already in use").  Let go
            # of it at once — with a zero linger, so no TIME_WAIT keeps the
            # port — and `_connect` tries again.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
            return
        self.link = link
        link.adopted = True
        self.transport = transport
        if self.owner.held and self.channel == "iopub":
            transport.pause_reading()
        self.ready = False
        self._greeted = False
        self._buf = bytearray()
        self._need = 64
        self._parts = []
        self._reader = None
        self._handshake_timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT, self._handshake_expired, link)
        transport.write(_GREETING + ready_command(self.socket_type, self.identity))

    def _handshake_expired(self, link: _Link) -> None:
        self._handshake_timer = None
        if link is not self.link or self.ready or self.transport is None:
            return
        log.warning("Kernel %s channel (%s): no ZMTP handshake within %.0fs (%s); reconnecting", self.channel,
                    self.where, HANDSHAKE_TIMEOUT,
                    "greeting received, no READY" if self._greeted else f"{len(self._buf)} greeting bytes received")
        self.transport.abort()

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None

    def detach(self, link: _Link, exc: Exception | None) -> None:
        """A connection ended; reconnect if it was the channel's own."""
        if link is not self.link:
            return  # a connection refused in `attach`; its connector retries
        self._leave_poller()
        self.link = None
        self.transport = None
        self.ready = False
        self._cancel_handshake_timer()
        if not self.closed:
            log.info("Kernel %s connection to %s lost (%s); reconnecting", self.channel, self.where,
                     exc or "closed by kernel")
            # Not at once: a peer that accepts and drops must not become a busy loop.
            self.start(RECONNECT_INTERVAL)

    def close(self) -> None:
        self.closed = True
        if self._reader is not None:
            self._reader.close()
        self.pending.clear()
        self._cancel_handshake_timer()
        if self._connector is not None:
            self._connector.cancel()
        self._leave_poller()
        if self.transport is not None:
            self.transport.abort()
            self.transport = None
        self.link = None

    # -- sending ---------------------------------------------------------------------
    def queued_bytes(self) -> int:
        if self.transport is not None and self.ready:
            return self.transport.get_write_buffer_size()
        return self.pending_bytes

    def send(self, pieces: list[bytes], size: int) -> None:
        if self.queued_bytes() + size > MAX_PENDING_BYTES:
            raise zmq.Again()  # what a full libzmq queue raises; the caller reports it
        if self.transport is not None and self.ready:
            self.transport.write(b"".join(pieces))
        else:
            self.pending.append(pieces)
            self.pending_bytes += size

    def _on_ready(self) -> None:
        self.ready = True
        self._cancel_handshake_timer()
        assert self.transport is not None
        log.info("ZMTP %s channel ready (%s)", self.channel, self.where)
        if self.socket_type == "SUB":
            # Subscribe to every topic (ZMTP 3.0 subscription message).
            self.transport.write(b"".join(encode_frame(b"\x01")))
        if self.pending:
            pending, self.pending, self.pending_bytes = self.pending, [], 0
            self.transport.write(b"".join(piece for pieces in pending for piece in pieces))

    # -- receiving -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if self.channel != "iopub" and self.ready:
            # The kernel answered: outputs held meanwhile (coalesce.py) are read
            # first, then this answer, and both flushed — in this one wake-up.
            owner.answer_arrived()
        if self._feed(data):
            owner.batch_done(self.channel)
            if self.channel == "iopub" and self.ready and self._poller is None and owner.gate is not None:
                self._enter_poller()

    # -- iopub through iopub_poll.py -------------------------------------------------
    def _enter_poller(self) -> None:
        link, transport = self.link, self.transport
        poller = poller_for(asyncio.get_running_loop())
        if poller is None or link is None or transport is None or transport.is_closing() or self.closed:
            return
        transport.pause_reading()  # for good: from now on the poller says when to read
        fd = link.sock.fileno()
        poller.add(fd, self._on_polled, reading=not self.owner.held)
        self._poller, self._polled_fd = poller, fd

    def _leave_poller(self) -> None:
        if self._poller is not None:
            self._poller.remove(self._polled_fd)
            self._poller, self._polled_fd = None, -1

    def _on_polled(self, events: int) -> None:
        ended = False
        if events & READABLE:
            ended = self.read_now()
            if not self.closed:
                self.owner.batch_done(self.channel)
        if (ended or events & ENDED) and self._poller is not None:
            # The kernel closed or reset the connection: the transport reads what
            # is left and reports the end, which reconnects (`detach`).
            self._leave_poller()
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    def _feed(self, data: bytes) -> bool:
        """Add received bytes and deliver every complete message; False if the connection was reset."""
        try:
            if self._reader is not None:
                self._reader.feed(data)
                return True
            buf = self._buf
            buf += data
            if len(buf) < self._need:
                return True
            consumed = self._parse(buf)
            if consumed:
                del buf[:consumed]
            if self.ready and not self._parts and self.owner.router is not None and not self.closed:
                # Handshake done, at a message boundary: the compiled reader takes over.
                self._reader = native.make_reader(self.owner.router, self.channel, self._command)
                if buf:
                    rest = bytes(buf)
                    buf.clear()
                    self._reader.feed(rest)
        except (ProtocolError, native.ProtocolError) as e:
            log.warning("Kernel %s channel: %s; reconnecting", self.channel, e)
            if self.transport is not None:
                self.transport.abort()
            return False
        return True

    def read_now(self, limit: int = 4 * 1024 * 1024) -> bool:
        """Parse what the kernel already sent on this connection, without waiting for the loop.

        Used on the iopub connection when the read gate releases it: when
        the kernel's answer arrives, the outputs published before it are in
        this socket's buffer already, and go to clients ahead of the answer.
        Up to `limit` bytes are read here; anything more is read on the next
        call.  True if the connection ended (end of stream or an error): its
        transport reports that when it reads next.
        """
        link = self.link
        if link is None or not self.ready or self.closed:
            return False
        while limit > 0:
            want = min(limit, 256 * 1024)
            try:
                data = link.sock.recv(want)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                return True
            if not data:
                return True
            limit -= len(data)
            if not self._feed(data) or self.link is not link or len(data) < want:
                return False  # a short read emptied the buffer: no second recv just to hear EAGAIN
        return False

    def is_reading(self) -> bool:
        """Whether what the kernel sends on this connection is being read (not held, not paused)."""
        if self._poller is not None:
            return not self.owner.held
        return self.transport is not None and self.transport.is_reading()

    def set_reading(self, on: bool) -> None:
        """Pause or resume reading this channel's connection (the read gate)."""
        if self._poller is not None:
            self._poller.set_reading(self._polled_fd, on)
            return
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if on:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _parse(self, buf: bytearray) -> int:
        pos = 0
        size = len(buf)
        if not self._greeted:
            if buf[0] != 0xFF or buf[9] & 1 != 1:
                raise ProtocolError("not a ZMTP peer")
            if buf[10] < 3:
                raise ProtocolError(f"peer speaks ZMTP {buf[10]}.{buf[11]}, not 3.x")
            if bytes(buf[12:32]).rstrip(b"\x00") != b"NULL":
                raise ProtocolError(f"peer wants security mechanism {bytes(buf[12:32]).rstrip(bytes(1))!r}")
            self._greeted = True
            pos = 64
        parts = self._parts
        while size - pos >= 2:
            flags = buf[pos]
            if flags & _LONG:
                if size - pos < 9:
                    break
                length = int.from_bytes(buf[pos + 1 : pos + 9], "big")
                if length > MAX_FRAME_BYTES:
                    raise ProtocolError(f"frame of {length} bytes")
                start = pos + 9
            else:
                length = buf[pos + 1]
                start = pos + 2
            end = start + length
            if end > size:
                self._need = end - pos
                return pos
            body = bytes(buf[start:end])
            pos = end
            if flags & _COMMAND:
                self._command(body)
                continue
            if not self.ready:
                raise ProtocolError("message before the READY handshake")
            parts.append(body)
            if not flags & _MORE:
                self._parts = []
                self.owner.deliver(self.channel, parts)
                if self.closed:
                    return pos
                parts = self._parts
        self._need = 2
        return pos

    def _command(self, body: bytes) -> None:
        if not body:
            raise ProtocolError("empty command")
        name = body[1 : 1 + body[0]]
        if name == b"READY":
            props = parse_properties(body[1 + body[0] :])
            peer = props.get(b"socket-type", b"")
            if peer not in _PEER_TYPES[self.socket_type]:
                raise ProtocolError(f"a {self.socket_type} cannot talk to a {peer.decode(errors='replace')} socket")
            self._on_ready()
        elif name == b"PING" and self.transport is not None:
            # Heartbeat: answer PONG with the ping's context (after the 2-byte TTL).
            context = body[1 + body[0] + 2 :]
            self.transport.write(b"".join(encode_frame(b"\x04PONG" + context, _COMMAND)))
        elif name == b"ERROR":
            raise ProtocolError(f"peer reported an error: {body[1 + body[0] + 1 :]!r}")
        # Other commands (PONG, SUBSCRIBE echoes) carry nothing for a client.


class ZMTPKernelSockets(Holdable):
    """shell/control/stdin/iopub of one kernel over asyncio TCP or Unix sockets (same interface as `KernelSockets`)."""

    CHANNELS = ("shell", "control", "stdin", "iopub")

    def __init__(self, info: dict[str, Any], identity: bytes, on_message: MessageCallback,
                 on_batch_end: Callable[[], None], gate: ReadGate | None = None, router: Any = None) -> None:
        kind = info.get("transport", "tcp")
        if kind not in STREAM_TRANSPORTS:
            raise ValueError(f"ZMTP sockets support the tcp and ipc transports, not {kind!r}")
        #: The compiled Router (native.py) that routes this kernel's common messages, or None.
        self.router = router
        self._on_message = on_message
        self._on_batch_end = on_batch_end
        super().__init__(gate)
        ipc = kind == "ipc"
        host = tcp_host(info)
        self.channels: dict[str, _Channel] = {}
        for channel in self.CHANNELS:
            sub = channel == "iopub"
            # The kernel addresses stdin requests to the shell identity, so all DEALERs share it.
            chan = _Channel(self, channel, host, int(info[f"{channel}_port"]), "SUB" if sub else "DEALER",
                            None if sub else identity, ipc_path(info, channel) if ipc else None)
            self.channels[channel] = chan
            chan.start()

    def deliver(self, channel: str, frames: list[bytes]) -> None:
        deliver_frames(self._on_message, channel, frames)

    def batch_done(self, channel: str) -> None:
        if self.closed:
            return
        try:
            self._on_batch_end()  # as _flush, one frame less: this runs for every batch
        except Exception:
            log.exception("Error flushing kernel messages to clients")
        if channel == "iopub" and self.gate is not None and not self.held:
            self.gate.after_output(self)

    def _flush(self) -> None:
        try:
            self._on_batch_end()
        except Exception:
            log.exception("Error flushing kernel messages to clients")

    def hold(self) -> None:
        """Stop reading iopub; the kernel's outputs wait in the TCP buffers."""
        self.held = True
        self.channels["iopub"].set_reading(False)

    def release(self) -> None:
        """Read what waited on iopub now, then resume reading it as it arrives."""
        self.held = False
        chan = self.channels.get("iopub")
        if chan is None:
            return
        chan.set_reading(True)
        chan.read_now()
        if not self.answering and not self.closed:
            self._flush()

    #: Reads are level-triggered here: nothing for the kernel monitor to poke.
    needs_poke = False

    def poke(self) -> None:
        """Nothing to do (kept for interface parity with the pyzmq transport)."""

    def send(self, channel: str, signature: bytes, parts: Sequence[bytes]) -> None:
        """Send [delimiter, signature, *parts]; raises `zmq.Again` if the channel's queue is full."""
        if self.closed:
            raise ConnectionError("kernel sockets are closed")
        frame = native.zmtp_message
        if frame is None:
            pieces = encode_message([DELIMITER, signature, *parts])
            self.channels[channel].send(pieces, sum(len(p) for p in pieces))
        else:
            data = frame([DELIMITER, signature, *parts])
            self.channels[channel].send([data], len(data))

    def close(self) -> None:
        """Close every connection (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for chan in self.channels.values():
            chan.close()
        self.channels.clear()
