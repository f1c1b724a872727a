"""`DirectWebSocket` (platform/kernels/ws_direct.py) against an in-memory transport.

The byte-level tests against a real server are in test_channels_ws_bytes.py;
these cover what needs a clock or exact byte boundaries: keepalive, the
close timeout, frames split at every offset, and the size limit across
fragments.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest
from zasperhub.platform.kernels import native, ws_direct
from zasperhub.platform.kernels.ws_direct import DirectWebSocket

from tests.kernels.wsclient import masked_frame


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        assert not self.closed
        self.out += data

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class Sink:
    def __init__(self) -> None:
        self.messages: list[str | bytes] = []

    def on_message(self, message: str | bytes) -> None:
        self.messages.append(message)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    pos = 0
    while pos < len(data):
        first, n = data[pos], data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        frames.append((first & 0x0F, bytes(data[pos : pos + n])))
        pos += n
    return frames


def make(max_size: int = 1 << 20, ping: float = 0.0) -> tuple[DirectWebSocket, FakeTransport, Sink]:
    sink = Sink()
    ws = DirectWebSocket(sink, max_size, ping, ping)
    transport = FakeTransport()
    ws.connection_made(transport)
    return ws, transport, sink


async def test_frames_split_at_every_offset():
    stream = (masked_frame(0x1, "héllo".encode()) + masked_frame(0x2, b"\x00" * 300)
              + masked_frame(0x1, b"a" * 70000) + masked_frame(0x9, b"hi"))
    for cut in range(0, len(stream), 997):
        ws, transport, sink = make()
        ws.data_received(stream[:cut])
        ws.data_received(stream[cut:])
        assert sink.messages == ["héllo", b"\x00" * 300, "a" * 70000], cut
        assert server_frames(bytes(transport.out)) == [(0xA, b"hi")]
    # One byte at a time.
    ws, transport, sink = make()
    for i in range(len(stream)):
        ws.data_received(stream[i : i + 1])
    assert len(sink.messages) == 3


async def test_fragments_with_a_ping_between_and_the_size_limit_across_them():
    ws, transport, sink = make(max_size=100)
    ws.data_received(masked_frame(0x1, b"x" * 60, fin=False) + masked_frame(0x9, b"p") + masked_frame(0x0, b"y" * 30))
    assert sink.messages == ["x" * 60 + "y" * 30]
    ws.data_received(masked_frame(0x2, b"x" * 60, fin=False) + masked_frame(0x0, b"y" * 60))
    frames = server_frames(bytes(transport.out))
    assert frames[-1][0] == 0x8 and struct.unpack("!H", frames[-1][1][:2])[0] == 1009
    assert len(sink.messages) == 1 and transport.closed


async def test_keepalive_drops_a_silent_client_and_keeps_an_answering_one():
    ws, transport, _ = make(ping=3600)  # ticks driven by hand below
    assert ws._ping_timer is not None
    ws._keepalive()  # first tick: the client spoke since connecting (the handshake)
    assert server_frames(bytes(transport.out)) == [(0x9, b"")]
    ws.data_received(masked_frame(0xA, b""))  # the pong
    ws._keepalive()
    assert not transport.aborted and len(server_frames(bytes(transport.out))) == 2
    ws._keepalive()  # nothing heard since the second ping
    assert transport.aborted
    ws.connection_lost(None)
    assert ws.done.done() and ws._ping_timer is None


async def test_our_close_waits_for_the_client_then_drops(monkeypatch):
    monkeypatch.setattr(ws_direct, "CLOSE_WAIT", 0.05)
    ws, transport, _ = make()
    ws.close(1013, "too slow")
    ws.close(1000, "again")  # one close frame only
    assert server_frames(bytes(transport.out)) == [(0x8, struct.pack("!H", 1013) + b"too slow")]
    assert ws.closing and not transport.closed
    ws.write(b"late")  # nothing after the close frame
    assert transport.out.endswith(b"too slow")
    await asyncio.sleep(0.1)
    assert transport.aborted


async def test_client_close_is_echoed_and_ends_the_connection():
    ws, transport, sink = make()
    ws.data_received(masked_frame(0x8, struct.pack("!H", 1001) + b"going") + masked_frame(0x1, b"ignored"))
    assert server_frames(bytes(transport.out)) == [(0x8, struct.pack("!H", 1001))]
    assert transport.closed and sink.messages == []
    assert (ws.close_code, ws.close_reason) == (1001, "going")


async def test_a_handler_error_does_not_end_the_connection():
    class Failing(Sink):
        def on_message(self, message: str | bytes) -> None:
            super().on_message(message)
            raise RuntimeError("boom")

    ws = DirectWebSocket(Failing(), 1 << 20)
    transport = FakeTransport()
    ws.connection_made(transport)
    ws.data_received(masked_frame(0x1, b"a") + masked_frame(0x1, b"b"))
    assert ws.sink.messages == ["a", "b"] and not transport.closed


async def test_an_attached_sink_writes_to_the_transport_and_stops_at_our_close_frame():
    """The compiled sink writes straight to the transport; nothing of it follows our close frame."""
    if not native.available():
        pytest.skip("compiled path not built")
    parts = [b'{"msg_type":"status"}', b"{}", b"{}", b'{"execution_state":"idle"}']

    def sink_for(ws: DirectWebSocket) -> Any:
        return ws.attach_outgoing(lambda write, buffered: native.make_sink(write, buffered, lambda n: None, 1 << 20, False))

    ws, transport, _ = make()
    sink = sink_for(ws)
    sink.deliver("iopub", parts)
    sink.flush()
    frames = server_frames(bytes(transport.out))
    assert len(frames) == 1 and frames[0][0] == 0x1 and b"execution_state" in frames[0][1]
    ws.close(1001, "bye")
    sink.deliver("iopub", parts)
    sink.flush()
    assert sink.closed and server_frames(bytes(transport.out))[-1] == (0x8, struct.pack("!H", 1001) + b"bye")
    assert sink_for(ws) is None, "no sink once our close frame went out"
    # The connection ending closes it too.
    ws, transport, _ = make()
    sink = sink_for(ws)
    ws.connection_lost(None)
    sink.deliver("iopub", parts)
    sink.flush()
    assert sink.closed and transport.out == b""
