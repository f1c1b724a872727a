"""A WebSocket protocol that parses every client frame already received in one pass.

Used for kernel WebSockets that cannot be handed to an asyncio transport
(see ws_direct.py), and as the base of `ws_direct.DirectProtocol`.

Tornado's `WebSocketProtocol13` reads a frame with four awaited
`read_bytes` calls (header, extended length, mask, payload).  After the
first one the rest of the frame is still buffered, so its stream stops and
restarts watching the socket for every frame: a selector unregister and
register (two `epoll_ctl` calls plus asyncio handle bookkeeping) and several
future hand-offs per client message — a large share of the server's CPU per
kernel round trip (benchmarks/results/cpu.md).

`BurstReadingProtocol` instead takes whatever bytes are available in one
`read_bytes(partial=True)`, which drains tornado's buffer so the stream keeps
its read registration, and parses all complete frames in it.  Only a frame
that is still incomplete waits for exactly the bytes it lacks.  Everything
else — message dispatch, close and ping handling, fragmentation rules, the
size limit (close 1009), aborting on reserved bits or bad control frames —
follows RFC 6455 as `WebSocketProtocol13` does, and replies, pongs and closes
are still written by it.
"""

from __future__ import annotations

import asyncio
import struct

from tornado.iostream import StreamClosedError
from tornado.util import _websocket_mask
from tornado.websocket import WebSocketProtocol13

#: Largest read per wake-up; a bigger backlog is read over several passes.
READ_CHUNK = 256 * 1024
#: Bytes parsed before yielding to other connections (a flooding client must not starve them).
YIELD_EVERY = 256 * 1024

_FIN, _RSV, _OPCODE = 0x80, 0x70, 0x0F
_MASKED, _LENGTH = 0x80, 0x7F


class BurstReadingProtocol(WebSocketProtocol13):
    """`WebSocketProtocol13` with a batched frame reader (writing is unchanged)."""

    async def _receive_frame_loop(self) -> None:
        try:
            rest: bytes | None = b""
            while rest is not None and not self.client_terminated:
                if rest:
                    # The previous pass stopped early to let other connections run.
                    await asyncio.sleep(0)
                    data = rest
                else:
                    data = await self.stream.read_bytes(READ_CHUNK, partial=True)
                    self._wire_bytes_in += len(data)
                rest = await self._parse_frames(data)
        except StreamClosedError:
            self._abort()
        finally:
            self.handler.on_ws_connection_close(self.close_code, self.close_reason)

    async def _more(self, data: bytes, needed: int) -> bytes:
        """`data` extended to at least `needed` bytes, waiting for exactly the missing ones."""
        missing = needed - len(data)
        if missing <= 0:
            return data
        extra = await self.stream.read_bytes(missing)
        self._wire_bytes_in += missing
        return data + extra

    async def _parse_frames(self, data: bytes) -> bytes | None:
        """Handle the frames in `data`, awaiting the rest of a partial last one.

        Returns the bytes left when it stopped early to yield (b"" when all
        were handled), or None once the connection was aborted.
        """
        pos = 0
        size = len(data)
        parsed = 0
        while pos < size and not self.client_terminated:
            if size - pos < 2:
                data = await self._more(data, pos + 2)
                size = len(data)
            first, second = data[pos], data[pos + 1]
            opcode = first & _OPCODE
            is_control = opcode & 0x8
            length = second & _LENGTH
            if first & _RSV or (is_control and (length >= 126 or not first & _FIN)):
                # Unknown extension bits, or a fragmented or oversized control frame.
                self._abort()
                return None
            header = 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            masked = second & _MASKED
            if masked:
                header += 4
            if size - pos < header:
                data = await self._more(data, pos + header)
                size = len(data)
            if length == 126:
                length = struct.unpack_from("!H", data, pos + 2)[0]
            elif length == 127:
                length = struct.unpack_from("!Q", data, pos + 2)[0]
            total = length
            if self._fragmented_message_buffer is not None:
                total += len(self._fragmented_message_buffer)
            if total > self.params.max_message_size:
                self.close(1009, "message too big")
                self._abort()
                return None
            end = pos + header + length
            if end > size:
                # Only the frame's own bytes are awaited: the next frame is
                # read (partially) by the caller's next pass.
                data = await self._more(data, end)
                size = len(data)
            payload = data[pos + header : end]
            if masked:
                payload = _websocket_mask(data[pos + header - 4 : pos + header], payload)
            pos = end
            parsed += header + length
            if not self._frame(first & _FIN, opcode, is_control, payload):
                return None
            if parsed >= YIELD_EVERY and pos < size:
                # Leave the rest for the next pass, after a yield.
                return data[pos:]
        return data[pos:] if pos < size else b""

    def _frame(self, final: int, opcode: int, is_control: int, payload: bytes) -> bool:
        """Apply one frame (fragment bookkeeping, then dispatch); False once the connection is aborted."""
        if not is_control:
            if opcode == 0:  # continuation
                if self._fragmented_message_buffer is None:
                    self._abort()
                    return False
                self._fragmented_message_buffer.extend(payload)
                if not final:
                    return True
                opcode = self._fragmented_message_opcode  # type: ignore[assignment]
                payload = bytes(self._fragmented_message_buffer)
                self._fragmented_message_buffer = None  # type: ignore[assignment]
            else:
                if self._fragmented_message_buffer is not None:
                    self._abort()  # a new message before the previous one ended
                    return False
                if not final:
                    self._fragmented_message_opcode = opcode  # type: ignore[assignment]
                    self._fragmented_message_buffer = bytearray(payload)
                    return True
        # The kernel handler's on_message is synchronous, so nothing is awaited here.
        self._handle_message(opcode, payload)
        return not self.client_terminated or opcode == 0x8
