"""The ZMTP transport (zmtp.py) against a byte-level fake kernel peer on loopback.

Each test scripts what a "kernel" socket does on every accepted TCP
connection — split greetings, a peer that never greets, a dropped
connection while the read gate holds iopub — to pin down handshake and
reconnect cases a real ipykernel only produces by chance.  The peer plays
ROUTER for the DEALER channels and PUB for iopub, chosen from the client's
READY, so one listening port serves all four channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from zasperhub.platform.kernels import zmtp
from zasperhub.platform.kernels.coalesce import ReadGate
from zasperhub.platform.kernels.zmqio import DELIMITER
from zasperhub.platform.kernels.zmtp import (
    ZMTPKernelSockets,
    encode_message,
    parse_properties,
    ready_command,
)

#: A ZMTP 3.1 NULL greeting as libzmq 4.3 sends it (as-server set).
PEER_GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes((3, 1)) + b"NULL".ljust(20, b"\x00") + b"\x01" + b"\x00" * 31
_ANSWER_TYPE = {b"DEALER": "ROUTER", b"SUB": "PUB"}


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One ZMTP frame from the client: (flags, body)."""
    flags = (await reader.readexactly(1))[0]
    if flags & 0x02:
        size = int.from_bytes(await reader.readexactly(8), "big")
    else:
        size = (await reader.readexactly(1))[0]
    return flags, await reader.readexactly(size)


async def read_message(reader: asyncio.StreamReader) -> list[bytes]:
    """The client's next message (commands skipped)."""
    parts: list[bytes] = []
    while True:
        flags, body = await read_frame(reader)
        if flags & 0x04:
            continue
        parts.append(body)
        if not flags & 0x01:
            return parts


class Conn:
    """One accepted connection, after the client's greeting and READY were read."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, socket_type: bytes, index: int) -> None:
        self.reader = reader
        self.writer = writer
        #: The client's Socket-Type (b"DEALER" or b"SUB").
        self.socket_type = socket_type
        #: How many connections of this socket type came before this one.
        self.index = index

    async def greet(self, split: bool = False) -> None:
        """Our greeting and READY, in one write or one byte per write."""
        data = PEER_GREETING + ready_command(_ANSWER_TYPE[self.socket_type], None)
        await self.write(data, split)

    async def write(self, data: bytes, split: bool = False) -> None:
        if not split:
            self.writer.write(data)
            await self.writer.drain()
            return
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(0.001)  # separate TCP segments, so separate reads on the client

    async def send(self, parts: list[bytes], split: bool = False) -> None:
        await self.write(b"".join(encode_message(parts)), split)


Script = Callable[[Conn], Awaitable[None]]


class FakePeer:
    """A loopback listener that runs `script` for every connection a channel makes."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.counts: dict[bytes, int] = {}
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            greeting = await reader.readexactly(64)
            assert greeting[0] == 0xFF and greeting[10] == 3, greeting
            flags, ready = await read_frame(reader)
            assert flags & 0x04 and ready.startswith(b"\x05READY"), ready
            socket_type = parse_properties(ready[6:])[b"socket-type"]
            index = self.counts.get(socket_type, 0)
            self.counts[socket_type] = index + 1
            await self.script(Conn(reader, writer, socket_type, index))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client dropped the connection: part of several scripts
        except Exception as e:  # noqa: BLE001 - a failed assertion in a script fails the test, not the server
            self.errors.append(e)
        finally:
            writer.close()

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def info_for(port: int) -> dict[str, Any]:
    return {"transport": "tcp", "ip": "127.0.0.1", "shell_port": port, "iopub_port": port, "control_port": port, "stdin_port": port}


async def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def kernel_link(script: Callable[[Conn], Awaitable[None]], on_message: Callable[[str, list[bytes]], Any] | None = None,
                      gate: ReadGate | None = None) -> AsyncIterator[tuple[FakePeer, ZMTPKernelSockets]]:
    """A fake kernel running `script` and our sockets connected to it; all closed afterwards (the gate too)."""
    peer = FakePeer(script)
    port = await peer.start()
    sockets = ZMTPKernelSockets(info_for(port), b"me", on_message or (lambda ch, parts: None), lambda: None, gate)
    try:
        yield peer, sockets
    finally:
        sockets.close()
        if gate is not None:
            gate.close()
        await peer.stop()


async def serve_forever(conn: Conn) -> None:
    """Keep the connection open, answering nothing, until the client drops it."""
    await conn.reader.read()


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    """Warnings of the kernels logger (a handler on it: propagation may be off after in-process apps)."""
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("zasperhub.kernels")
    logger.addHandler(handler)
    yield seen
    logger.removeHandler(handler)


MESSAGE = [DELIMITER, b"sig", b'{"msg_type":"kernel_info_reply"}', b"{}", b"{}", b"{}"]


async def test_handshake_and_message_split_into_single_bytes():
    """A greeting, READY and message arriving one byte per read still make a ready channel; queued sends go out."""
    got: list[tuple[str, list[bytes]]] = []
    received: list[list[bytes]] = []

    async def script(conn: Conn) -> None:
        await conn.greet(split=conn.socket_type == b"DEALER")
        if conn.socket_type == b"DEALER":
            received.append(await read_message(conn.reader))
            await conn.send([b"routing-prefix", *MESSAGE], split=True)
        await serve_forever(conn)

    async with kernel_link(script, lambda ch, parts: got.append((ch, parts))) as (peer, sockets):
        for channel in ("shell", "control", "stdin"):  # before the handshake: queued
            sockets.send(channel, channel.encode(), [b"{}", b"{}", b"{}", b"{}"])
        await wait_until(lambda: len(got) == 3)
        assert {ch for ch, _ in got} == {"shell", "control", "stdin"}
        assert all(parts == MESSAGE[1:] for _, parts in got)
        assert sorted(received) == [[DELIMITER, ch, b"{}", b"{}", b"{}", b"{}"] for ch in (b"control", b"shell", b"stdin")]
        assert peer.errors == []


async def test_peer_without_the_zmtp_signature_is_refused(warnings):
    """Byte 9 of a ZMTP greeting must have its low bit set (0x7f); anything else is not a ZMTP peer."""

    async def script(conn: Conn) -> None:
        conn.writer.write(PEER_GREETING[:9] + b"\x00" + PEER_GREETING[10:] + ready_command(_ANSWER_TYPE[conn.socket_type], None))
        await serve_forever(conn)

    async with kernel_link(script) as (peer, sockets):
        await wait_until(lambda: peer.counts.get(b"DEALER", 0) >= 6)  # each DEALER channel retried
        assert not any(chan.ready for chan in sockets.channels.values())
        assert any("not a ZMTP peer" in w for w in warnings), warnings


@pytest.mark.parametrize("first", ["silent", "greeting only"])
async def test_connection_without_handshake_is_dropped_and_retried(monkeypatch, warnings, first):
    """A peer that accepts but never completes the handshake does not hold the channel forever (libzmq's handshake timeout)."""
    monkeypatch.setattr(zmtp, "HANDSHAKE_TIMEOUT", 0.3)
    got: list[tuple[str, list[bytes]]] = []
    received: list[list[bytes]] = []

    async def script(conn: Conn) -> None:
        if conn.socket_type == b"DEALER" and conn.index < 3:  # the first connection of each DEALER channel
            if first == "greeting only":
                await conn.write(PEER_GREETING)
            await serve_forever(conn)
            return
        await conn.greet()
        if conn.socket_type == b"DEALER":
            received.append(await read_message(conn.reader))
            await conn.send(MESSAGE)
        await serve_forever(conn)

    async with kernel_link(script, lambda ch, parts: got.append((ch, parts))) as (peer, sockets):
        for channel in ("shell", "control", "stdin"):
            sockets.send(channel, channel.encode(), [b"{}", b"{}", b"{}", b"{}"])
        await wait_until(lambda: len(got) == 3, timeout=10)
        assert sorted(parts[1] for parts in received) == [b"control", b"shell", b"stdin"]
        assert peer.counts[b"DEALER"] == 6
        assert sum("no ZMTP handshake within" in w for w in warnings) == 3, warnings
        assert peer.errors == []


async def test_handshake_timer_does_not_fire_on_a_ready_channel(monkeypatch, warnings):
    """Once READY arrived, a quiet kernel is not a stuck handshake."""
    monkeypatch.setattr(zmtp, "HANDSHAKE_TIMEOUT", 0.2)

    async def script(conn: Conn) -> None:
        await conn.greet()
        await serve_forever(conn)

    async with kernel_link(script) as (peer, sockets):
        await wait_until(lambda: all(chan.ready for chan in sockets.channels.values()))
        await asyncio.sleep(0.5)
        assert all(chan.ready for chan in sockets.channels.values())
        assert peer.counts == {b"DEALER": 3, b"SUB": 1}
        assert not any("handshake" in w for w in warnings), warnings


async def test_sub_subscribes_again_after_a_reconnect():
    """A PUB only sends to subscribers: every new iopub connection must carry the subscription again."""
    got: list[tuple[str, list[bytes]]] = []
    subscriptions: list[list[bytes]] = []

    async def script(conn: Conn) -> None:
        await conn.greet()
        if conn.socket_type == b"SUB":
            subscriptions.append(await read_message(conn.reader))
            if conn.index == 0:
                return  # drop the first iopub connection right after it subscribed
            await conn.send([b"topic", *MESSAGE])
        await serve_forever(conn)

    async with kernel_link(script, lambda ch, parts: got.append((ch, parts))) as (peer, sockets):
        await wait_until(lambda: got)
        assert got == [("iopub", MESSAGE[1:])]
        assert subscriptions == [[b"\x01"], [b"\x01"]]
        assert peer.errors == []


async def test_polled_iopub_reads_reconnects_and_reads_again():
    """With a read gate, iopub is read through iopub_poll.py; a dropped connection is noticed there too."""
    got: list[tuple[str, list[bytes]]] = []
    gate = ReadGate(reply_window=0.3)
    second = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.greet()
        if conn.socket_type == b"SUB":
            await read_message(conn.reader)  # the subscription
            await conn.send([b"topic", *MESSAGE])
            if conn.index == 0:
                await second.wait()
                return  # the kernel drops the connection while nothing is held
        await serve_forever(conn)

    async with kernel_link(script, lambda ch, parts: got.append((ch, parts)), gate) as (peer, sockets):
        iopub = sockets.channels["iopub"]
        await wait_until(lambda: got)
        await wait_until(lambda: iopub._polled_fd >= 0)
        assert not iopub.transport.is_reading(), "the transport is paused: the poller reads"
        second.set()
        await wait_until(lambda: len(got) == 2 and peer.counts.get(b"SUB") == 2, timeout=5)
        assert got == [("iopub", MESSAGE[1:])] * 2
        await wait_until(lambda: iopub._polled_fd >= 0)
        assert peer.errors == []


async def test_iopub_reconnected_while_held_is_read_once_released():
    """The read gate holds iopub; the connection drops and comes back while held; the release reads it."""
    got: list[tuple[str, list[bytes]]] = []
    gate = ReadGate(reply_window=0.3)
    drop = asyncio.Event()
    publish = asyncio.Event()

    async def script(conn: Conn) -> None:
        await conn.greet()
        if conn.socket_type == b"SUB":
            await read_message(conn.reader)  # the subscription
            if conn.index == 0:
                await drop.wait()
                return
            await publish.wait()
            await conn.send([b"topic", *MESSAGE])
        await serve_forever(conn)

    async with kernel_link(script, lambda ch, parts: got.append((ch, parts)), gate) as (peer, sockets):
        iopub = sockets.channels["iopub"]
        await wait_until(lambda: iopub.ready)
        await asyncio.sleep(0.05)  # past the output window the handshake read may have opened
        await wait_until(lambda: not sockets.held)
        gate.hold_for_reply(sockets)
        assert sockets.held
        drop.set()
        await wait_until(lambda: peer.counts.get(b"SUB") == 2 and iopub.transport is not None, timeout=5)
        publish.set()
        await wait_until(lambda: got, timeout=5)  # released at the reply window's end
        assert got == [("iopub", MESSAGE[1:])]
        assert not sockets.held and iopub.transport is not None and iopub.is_reading()


async def test_ping_is_answered_with_pong():
    """ZMTP heartbeats: a PING's context comes back in the PONG."""
    pongs: list[bytes] = []

    async def script(conn: Conn) -> None:
        await conn.greet()
        if conn.socket_type == b"DEALER" and conn.index == 0:
            ping = b"\x04PING" + (100).to_bytes(2, "big") + b"ctx"
            conn.writer.write(bytes((0x04, len(ping))) + ping)
            while True:
                flags, body = await read_frame(conn.reader)
                if flags & 0x04 and body.startswith(b"\x04PONG"):
                    pongs.append(body)
                    break
        await serve_forever(conn)

    async with kernel_link(script) as (peer, sockets):
        await wait_until(lambda: pongs)
        assert pongs == [b"\x04PONGctx"]


async def test_one_connector_per_channel_when_connections_keep_dropping():
    """A connection adopted and lost at once must not leave two connectors retrying (twice the connections)."""

    async def script(conn: Conn) -> None:
        await conn.greet()  # then the peer hangs up: the channel reconnects after RECONNECT_INTERVAL

    async with kernel_link(script) as (peer, sockets):
        started = time.monotonic()
        await asyncio.sleep(1.0)
        elapsed = time.monotonic() - started
        # One connector per channel: at most one connection per RECONNECT_INTERVAL each (plus the first).
        per_channel = peer.counts.get(b"DEALER", 0) / 3
        assert 2 <= per_channel <= elapsed / zmtp.RECONNECT_INTERVAL + 2, peer.counts
