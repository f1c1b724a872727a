"""Kernel WebSockets served from an asyncio transport once tornado has done the handshake.

Why: a kernel round trip costs the server two or three event-loop wake-ups,
and on this kind of machine each costs far more CPU (cold caches) than the
Python it runs (benchmarks/results/cpu.md).  Tornado's stream reads a client
frame through a Future and a coroutine resumption — an extra pass of the
event loop per frame — and re-registers the socket with the selector around
each read.  An asyncio transport calls `data_received` straight from the
selector callback, and `write` sends at once when nothing is queued.

How: tornado still does everything up to and including `101 Switching
Protocols` (authentication, the Host and Origin checks, the subprotocol, the
accept key) and calls the handler's `open`.  Then, for a plain TCP stream
with nothing buffered in either direction, the socket is duplicated,
tornado's stream is closed (the connection lives on in the duplicate) and
the duplicate becomes a transport driven by `DirectWebSocket`.  Messages the
kernel sends meanwhile wait in the handler.  Any other stream — bytes still
queued in tornado, a client that sent frames before the 101, a TLS stream
(its socket carries ciphertext) — stays with tornado's own protocol, which
is correct, only slower.

RFC 6455 as tornado applies it: client frames must be masked; fragmented
messages may have control frames between their fragments; a close frame is
echoed and the connection then closed, and after our own close frame the
client gets 5 s to answer before the connection is dropped; pings are
answered; a keepalive ping goes out every `websocket_ping_interval` and a
client that answered nothing by the next one is dropped.  Errors close the
connection with a code and reason: 1002 for a protocol violation (reserved
bits, an unknown opcode, an unmasked frame, a bad control frame, a stray
continuation), 1007 for a text message that is not UTF-8, 1009 for a message
above the size limit.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any, Protocol

from tornado.iostream import IOStream
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13
from zasperhub.platform.kernels import native

log = logging.getLogger("zasperhub.kernels")

#: Seconds a client has to answer our close frame before the connection is dropped (as tornado).
CLOSE_WAIT = 5.0

_FIN, _RSV, _OPCODE, _MASKED, _LENGTH = 0x80, 0x70, 0x0F, 0x80, 0x7F
_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class MessageSink(Protocol):
    """What `DirectWebSocket` hands complete messages to (the kernel channels handler)."""

    def on_message(self, message: str | bytes) -> Any: ...


def frame_header(opcode: int, length: int) -> bytes:
    """RFC 6455 header of a final, unmasked (server → client) frame."""
    first = _FIN | opcode
    if length < 126:
        return struct.pack("!BB", first, length)
    if length <= 0xFFFF:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """A final, unmasked (server → client) frame."""
    return frame_header(opcode, len(payload)) + payload


class _Violation(Exception):
    """The client broke the protocol: close with `code` and the message as reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class DirectWebSocket(asyncio.Protocol):
    """The server side of one WebSocket connection, after the handshake."""

    def __init__(self, sink: MessageSink, max_message_size: int, ping_interval: float = 0.0,
                 ping_timeout: float = 0.0) -> None:
        self.sink = sink
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout or ping_interval
        self.transport: asyncio.Transport | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.client_terminated = False  # the client's close frame came (or the connection is gone)
        self.server_terminated = False  # our close frame went out
        # A compiled sink (native.make_sink) writing kernel messages straight to the
        # transport, if one was attached: closed here when this side stops sending.
        self.outgoing: Any = None
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        # An incomplete frame's bytes, and how many the buffer must hold before parsing again.
        self._buf = bytearray()
        self._need = 0
        self._fragments: bytearray | None = None
        self._fragment_opcode = 0
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_timer: asyncio.TimerHandle | None = None
        self._heard = True  # anything received since the last keepalive ping

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.ping_interval > 0:
            self._ping_timer = self._loop.call_later(self.ping_interval, self._keepalive)

    def data_received(self, data: bytes) -> None:
        self._heard = True
        one_message = native.ws_message
        if one_message is not None and not self._buf and self._fragments is None and not self.client_terminated:
            # The usual read: one whole client message in one frame, unmasked in C.
            message = one_message(data, self.max_message_size)
            if message is not None:
                self._deliver(message)
                return
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return
            data = bytes(self._buf)
            self._buf = bytearray()
        try:
            pos = self._parse(data)
        except _Violation as e:
            log.warning("Kernel WebSocket: %s; closing (%d)", e, e.code)
            self._fail(e.code, str(e))
            return
        if pos < len(data) and not self.client_terminated:
            self._buf = bytearray(memoryview(data)[pos:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.client_terminated = self.server_terminated = True
        self._stop_outgoing()
        for timer in (self._close_timer, self._ping_timer):
            if timer is not None:
                timer.cancel()
        self._close_timer = self._ping_timer = None
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)

    # -- sending ---------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        return self.transport is None or self.server_terminated or self.client_terminated

    def write(self, data: bytes) -> None:
        """Queue already framed bytes (sent at once if the socket takes them)."""
        if self.transport is not None and not self.server_terminated:
            self.transport.write(data)

    def buffered(self) -> int:
        """Bytes accepted but not yet taken by the socket."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def attach_outgoing(self, make: Callable[[Callable[[bytes], Any], Callable[[], int]], Any]) -> Any:
        """`make(write, buffered)` builds a sink that writes to the transport itself (no frame of ours
        per write); it is closed when our close frame goes out or the connection ends.  Returns it."""
        if self.transport is None or self.server_terminated:
            return None
        self.outgoing = make(self.transport.write, self.transport.get_write_buffer_size)
        return self.outgoing

    def _stop_outgoing(self) -> None:
        outgoing, self.outgoing = self.outgoing, None
        if outgoing is not None:
            outgoing.close()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        """Send our close frame (once); the connection ends when the client answers, or CLOSE_WAIT later."""
        transport = self.transport
        if transport is None:
            return
        if not self.server_terminated:
            if code is None and reason is not None:
                code = 1000
            payload = b"" if code is None else struct.pack("!H", code) + (reason or "").encode("utf-8")[:123]
            transport.write(encode_frame(_CLOSE, payload))
            self.server_terminated = True
            self._stop_outgoing()  # nothing may follow our close frame
        if self.client_terminated:
            transport.close()
        elif self._close_timer is None:
            self._close_timer = self._loop.call_later(CLOSE_WAIT, self.abort)

    def abort(self) -> None:
        """Drop the connection now."""
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        self.client_terminated = True  # nothing more is read from this client
        self.close(code, reason)

    def _keepalive(self) -> None:
        self._ping_timer = None
        if self.transport is None or self.closing:
            return
        if not self._heard:
            log.info("Kernel WebSocket: no answer to a ping in %.0f s; dropping the connection", self.ping_timeout)
            self.abort()
            return
        self._heard = False
        self.transport.write(encode_frame(_PING, b""))
        self._ping_timer = self._loop.call_later(self.ping_timeout, self._keepalive)

    # -- receiving -------------------------------------------------------------------
    def _parse(self, data: bytes) -> int:
        """Handle every complete frame in `data`; returns where an incomplete one starts."""
        pos = 0
        size = len(data)
        while size - pos >= 2 and not self.client_terminated:
            first, second = data[pos], data[pos + 1]
            opcode = first & _OPCODE
            length = second & _LENGTH
            if first & _RSV:
                raise _Violation(1002, "reserved bits set (no extension was negotiated)")
            if not second & _MASKED:
                raise _Violation(1002, "unmasked client frame")
            if opcode & 0x8 and (length > 125 or not first & _FIN):
                raise _Violation(1002, "fragmented or oversized control frame")
            header = 6 if length < 126 else 8 if length == 126 else 14
            if size - pos < header:
                self._need = header
                return pos
            if length == 126:
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            elif length == 127:
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            if length + (len(self._fragments) if self._fragments is not None else 0) > self.max_message_size:
                raise _Violation(1009, "message too big")
            end = pos + header + length
            if end > size:
                self._need = end - pos
                return pos
            payload = _websocket_mask(data[pos + header - 4 : pos + header], data[pos + header : end])
            pos = end
            self._frame(first & _FIN, opcode, payload)
        self._need = 2
        return pos

    def _frame(self, final: int, opcode: int, payload: bytes) -> None:
        if opcode == _CONTINUATION:
            if self._fragments is None:
                raise _Violation(1002, "continuation frame without a message to continue")
            self._fragments += payload
            if not final:
                return
            opcode, payload = self._fragment_opcode, bytes(self._fragments)
            self._fragments = None
        elif opcode in (_TEXT, _BINARY):
            if self._fragments is not None:
                raise _Violation(1002, "new message before the previous one ended")
            if not final:
                self._fragments = bytearray(payload)
                self._fragment_opcode = opcode
                return
        elif opcode == _CLOSE:
            self._on_close_frame(payload)
            return
        elif opcode == _PING:
            if self.transport is not None and not self.server_terminated:
                self.transport.write(encode_frame(_PONG, payload))
            return
        elif opcode == _PONG:
            return
        else:
            raise _Violation(1002, f"unknown opcode {opcode:#x}")
        if opcode == _TEXT:
            try:
                message: str | bytes = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise _Violation(1007, "text message is not valid UTF-8") from None
        else:
            message = payload
        self._deliver(message)

    def _deliver(self, message: str | bytes) -> None:
        try:
            self.sink.on_message(message)
        except Exception:  # the handler's own errors must not end the connection silently
            log.exception("Error handling a kernel WebSocket message")

    def _on_close_frame(self, payload: bytes) -> None:
        self.client_terminated = True
        if len(payload) >= 2:
            self.close_code = struct.unpack("!H", payload[:2])[0]
            self.close_reason = payload[2:].decode("utf-8", "replace")
        # Echo the client's code (RFC 6455 §5.5.1), then end the TCP connection.
        self.close(self.close_code)


class DirectProtocol(WebSocketProtocol13):
    """Tornado's WebSocket protocol for the handshake; a `DirectWebSocket` after it when possible."""

    direct: DirectWebSocket | None = None
    #: Between closing tornado's stream and the transport being ready.
    switching = False
    _pending_close: tuple[int | None, str | None] | None = None

    def start_pinging(self) -> None:
        # Decided in `_receive_frame_loop`: a direct connection pings by itself.
        pass

    def _can_take_over(self) -> bool:
        stream = self.stream
        return (
            type(stream) is IOStream  # not TLS: the socket would carry ciphertext
            and not stream.closed()
            and not stream.writing()
            # Clients may not send before the 101 (RFC 6455 §4.1), so tornado holds nothing read.
            and getattr(stream, "_read_buffer_size", None) == 0
            and not (self.client_terminated or self.server_terminated)
        )

    async def _receive_frame_loop(self) -> None:
        if not self._can_take_over():
            super().start_pinging()
            await super()._receive_frame_loop()
            return
        handler: Any = self.handler
        stream = self.stream
        assert stream is not None and stream.socket is not None
        sock = stream.socket.dup()
        self.switching = True
        stream.set_close_callback(None)
        stream.close()  # closes tornado's descriptor only; the connection lives on in `sock`
        direct: DirectWebSocket | None = None
        try:
            loop = asyncio.get_running_loop()
            _, direct = await loop.connect_accepted_socket(
                lambda: DirectWebSocket(handler, handler.max_message_size, handler.ping_interval or 0.0,
                                        handler.ping_timeout or 0.0),
                sock=sock,
            )
        except OSError as e:
            sock.close()
            log.warning("Kernel WebSocket: could not take over the connection: %s", e)
        finally:
            self.switching = False
        try:
            if direct is None:
                return
            self.direct = direct
            if self._pending_close is not None:
                direct.close(*self._pending_close)
            else:
                handler.direct_ready(direct)  # what the kernel sent while switching goes out first
            await direct.done
        finally:
            self.client_terminated = self.server_terminated = True
            code = direct.close_code if direct is not None else None
            reason = direct.close_reason if direct is not None else None
            self.handler.on_ws_connection_close(code, reason)

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if self.direct is not None:
            self.direct.close(code, reason)
        elif self.switching:
            if self._pending_close is None:
                self._pending_close = (code, reason)
        else:
            super().close(code, reason)

    def is_closing(self) -> bool:
        if self.direct is not None:
            return self.direct.closing
        if self.switching:
            return self._pending_close is not None
        return super().is_closing()

    def _abort(self) -> None:
        if self.direct is not None:
            self.direct.abort()
            return
        super()._abort()
