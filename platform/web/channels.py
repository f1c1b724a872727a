"""The kernel WebSocket `/api/kernels/{id}/channels`: one client of a kernel's shared sockets.

Authentication, the Host check and the Origin check run before the upgrade
(the same `BaseHandler.prepare` path as every request, plus `check_origin`).
The wire format is negotiated from the offered subprotocols and handled by a
codec; this module only moves frames.

After the handshake the connection is handed to an asyncio transport
(`kernels/ws_direct.py`); one that cannot be (see there) stays on tornado's
stream.  Outgoing frames are framed here (RFC 6455, unmasked, uncompressed)
and written once per batch of kernel messages — to the transport, or to
tornado's stream — instead of one `write_message` task per message.  Bytes accepted but not yet flushed to the
client are counted; a client more than `KernelRegistry.client_buffer_bytes`
behind is disconnected with code 1013 (its messages are not dropped
silently: it reconnects and, if it was the only client, gets what arrived
meanwhile from the replay buffer).  Malformed client frames are logged and
answered by closing the connection with 1007 and the reason; the kernel and
its other clients are unaffected.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import Sequence
from typing import Any

from tornado import web
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol, WebSocketProtocol13
from zasperhub.platform.kernels import native
from zasperhub.platform.kernels.codec import (
    V1_SUBPROTOCOL,
    Codec,
    FrameError,
    choose_subprotocol,
    codec_for,
)
from zasperhub.platform.kernels.ws_direct import DirectProtocol, frame_header
from zasperhub.platform.web.base import BaseHandler

log = logging.getLogger("zasperhub.kernels")

_TEXT, _BINARY = 0x1, 0x2


class KernelChannelsHandler(WebSocketHandler, BaseHandler):
    """Relays one WebSocket client to and from its kernel."""

    auth_required = True

    def initialize(self) -> None:
        self.kernel: Any = None
        self.kernel_id = ""
        self.session_id = ""
        self.codec: Codec | None = None
        # Once the direct transport is up (and the extension is built): the
        # compiled sink that encodes and writes this client's frames (native.py).
        self.native_sink: Any = None
        self._out: list[bytes] = []
        self._pending = 0
        self._closed = False

    # -- before the upgrade ------------------------------------------------------
    def check_origin(self, origin: str) -> bool:
        allowed = self.origin_allowed()
        if not allowed:
            log.warning("Blocked kernel WebSocket from Origin %r", origin)
        return allowed

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return choose_subprotocol(subprotocols)

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # compressing every small message costs more CPU than it saves

    def get_websocket_protocol(self) -> WebSocketProtocol | None:
        # Tornado's handshake and parameters, then a direct asyncio transport (ws_direct.py).
        protocol = super().get_websocket_protocol()
        if type(protocol) is WebSocketProtocol13:
            return DirectProtocol(self, False, protocol.params)
        return protocol

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return int(self.zasper.kernel_registry.max_message_bytes)

    async def get(self, kernel_id: str) -> None:  # type: ignore[override]
        registry = self.zasper.kernel_registry
        if registry.closing:  # a stopping server, not a missing kernel: clients should retry
            raise web.HTTPError(503, "The server is shutting down")
        try:
            kernel = registry.get(kernel_id)
        except KeyError:
            raise web.HTTPError(404, f"Kernel does not exist: {kernel_id}") from None
        # The kernel_info handshake: accept clients only once the kernel answers.
        if not await kernel.wait_ready(registry.kernel_info_timeout):
            log.warning("Kernel %s is not answering kernel_info; connecting anyway", kernel_id)
        if kernel.shutting_down:
            code = 503 if registry.closing else 404
            raise web.HTTPError(code, f"Kernel was shut down: {kernel_id}")
        self.kernel = kernel
        self.kernel_id = kernel_id
        self.session_id = self.get_query_argument("session_id", "") or ""
        await super().get(kernel_id)

    # -- connection ----------------------------------------------------------------
    def open(self, kernel_id: str) -> None:  # type: ignore[override]
        stream = self.ws_connection.stream if self.ws_connection is not None else None
        if stream is not None and stream.socket is not None and stream.socket.family in (socket.AF_INET, socket.AF_INET6):
            # Tornado leaves Nagle on; with small frames and delayed ACKs
            # that stalls each message ~40 ms.
            stream.set_nodelay(True)
        self.codec = codec_for(self.selected_subprotocol)
        if self.kernel is None or self.kernel.shutting_down:
            self.close(1011, "kernel is gone")
            return
        log.debug("Client %s connected to kernel %s (%s)", self.session_id or "-", kernel_id, self.selected_subprotocol or "legacy")
        self.kernel.attach(self)

    def on_message(self, message: str | bytes) -> None:
        if self.kernel is None or self.codec is None or self._closed:
            return
        try:
            channel, parts = self.codec.decode(message)
            self.kernel.send_from_client(self, channel, parts)
        except FrameError as e:
            log.warning("Kernel %s: malformed frame from client %s: %s", self.kernel_id, self.session_id or "-", e)
            self.close_with(1007, f"Malformed message: {e}")
        except ConnectionError as e:
            log.warning("Kernel %s: client message not delivered: %s", self.kernel_id, e)

    def on_close(self) -> None:
        self._closed = True
        self._out.clear()
        if self.native_sink is not None:
            self.native_sink.close()
        if self.kernel is not None:
            self.kernel.detach(self)
        log.debug("Kernel %s: client %s closed (code %s)", self.kernel_id, self.session_id or "-", self.close_code)

    def on_ping(self, data: bytes) -> None:
        pass

    # -- kernel → client (the Connection protocol) ----------------------------------
    def deliver(self, channel: str, parts: Sequence[bytes]) -> None:
        if self._closed or self.codec is None:
            return
        if self.native_sink is not None:
            self.native_sink.deliver(channel, parts)
            return
        frame, binary = self.codec.encode(channel, parts)
        self._out.append(frame_header(_BINARY if binary else _TEXT, len(frame)))
        self._out.append(frame)  # type: ignore[arg-type]

    def send_queued(self) -> None:
        """One write for everything delivered since the last flush (one batch of kernel messages)."""
        if self.native_sink is not None:
            self.native_sink.flush()
            return
        if not self._out:
            return
        protocol = self.ws_connection
        if self._closed or protocol is None or protocol.is_closing():
            self._out.clear()
            return
        if getattr(protocol, "switching", False):
            return  # sent once the direct transport is up
        data = b"".join(self._out)
        self._out.clear()
        direct = getattr(protocol, "direct", None)
        if direct is not None:
            direct.write(data)
            self._check_backlog(direct.buffered())
            return
        # A stream that could not be handed over (rare; see ws_direct.py).
        stream = protocol.stream
        if stream is None:
            return
        try:
            future = stream.write(data)
        except StreamClosedError:
            return
        if future.done():
            future.exception()  # retrieve, so a closed stream is not logged as unhandled
            return
        self._pending += len(data)
        future.add_done_callback(functools.partial(self._flushed, len(data)))
        self._check_backlog(self._pending)

    def direct_ready(self, direct: Any) -> None:
        """ws_direct.py took the connection over: what the kernel sent meanwhile goes out, then the
        compiled sink (where built) encodes and writes everything after it."""
        self.send_queued()
        if not self._closed and self.codec is not None:
            limit = self.zasper.kernel_registry.client_buffer_bytes
            v1 = self.codec.subprotocol == V1_SUBPROTOCOL
            # The sink writes to the transport itself; the direct connection closes it
            # the moment nothing more may be sent (our close frame, the end).
            self.native_sink = direct.attach_outgoing(
                lambda write, buffered: native.make_sink(write, buffered, self._check_backlog, limit, v1))

    def _check_backlog(self, pending: int) -> None:
        limit = self.zasper.kernel_registry.client_buffer_bytes
        if pending > limit:
            log.warning(
                "Kernel %s: client %s is %d bytes behind (limit %d); disconnecting it",
                self.kernel_id, self.session_id or "-", pending, limit,
            )
            self.close_with(1013, "Client too slow: send buffer limit exceeded; reconnect")

    def _flushed(self, size: int, future: asyncio.Future[None]) -> None:
        self._pending -= size
        if not future.cancelled():
            future.exception()

    def close_with(self, code: int, reason: str) -> None:
        if self._closed:
            return
        # Messages already queued (e.g. the `dead` status) go out before the close frame.
        self.send_queued()
        self._closed = True
        if self.native_sink is not None:
            self.native_sink.close()
        if self.kernel is not None:
            self.kernel.detach(self)
        # Close reasons are limited to 123 bytes on the wire.
        self.close(code, reason.encode("utf-8")[:120].decode("utf-8", "ignore"))


handlers = [
    (r"/api/kernels/(?P<kernel_id>[\w-]+)/channels", KernelChannelsHandler),
]
