"""The kernel transports — asyncio ZMTP (zmtp.py) and pyzmq (zmqio.py) — against real peers.

Real ipykernel kernels (started with jupyter_client) on every channel —
shell, control, stdin, iopub — with a 10 MB output, kill -9 and restart on
the same ports (the channels reconnect by themselves), each on tcp and
ipc kernels, a libzmq ROUTER/PUB peer for framing edge cases, and a peer that
speaks garbage.  The server itself over this transport is covered at the
end, over both transports (`ZASPERHUB_KERNEL_TRANSPORT`).  Byte-level
handshake and reconnect cases are in test_zmtp_peer.py; a kernel that lost
a port before binding it, in test_zmtp_ports.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from zasperhub.platform.kernels.kernel import make_message
from zasperhub.platform.kernels.signing import Signer
from zasperhub.platform.kernels.zmqio import (
    DELIMITER,
    KernelSockets,
    open_kernel_sockets,
    wait_listening,
)
from zasperhub.platform.kernels.zmtp import (
    ZMTPKernelSockets,
    _Link,
    encode_frame,
    parse_properties,
    ready_command,
)

from tests.kernels.conftest import start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS


class Peer:
    """Our side of one kernel: sockets plus the messages received, by channel."""

    def __init__(self, info: dict[str, Any], transport: str = "zmtp") -> None:
        key = info["key"].encode() if isinstance(info["key"], str) else info["key"]
        self.signer = Signer(key, info.get("signature_scheme", "hmac-sha256"))
        self.session = os.urandom(8).hex()
        self.received: list[tuple[str, list[bytes]]] = []
        self.batches = 0
        self.arrived = asyncio.Event()
        self.sockets = open_kernel_sockets(info, os.urandom(8).hex().encode(), self._on_message, self._on_batch, transport)

    def _on_message(self, channel: str, parts: list[bytes]) -> None:
        assert self.signer.verify(parts[0], parts[1:])
        self.received.append((channel, parts[1:]))
        self.arrived.set()

    def _on_batch(self) -> None:
        self.batches += 1

    def send(self, channel: str, msg_type: str, content: dict[str, Any], parent: dict[str, Any] | None = None) -> str:
        parts = make_message(msg_type, self.session, content, parent)
        self.sockets.send(channel, self.signer.sign(parts), parts)
        return orjson.loads(parts[0])["msg_id"]

    async def wait(self, predicate: Any, timeout: float = 30) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """The first received message (channel, header, parent, content) matching `predicate`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            while seen < len(self.received):
                channel, parts = self.received[seen]
                seen += 1
                msg = (channel, orjson.loads(parts[0]), orjson.loads(parts[1]), orjson.loads(parts[3]))
                if predicate(*msg):
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message from the kernel")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def reply_to(self, msg_id: str, reply_type: str, timeout: float = 30) -> dict[str, Any]:
        _, _, _, content = await self.wait(lambda ch, h, p, c: p.get("msg_id") == msg_id and h["msg_type"] == reply_type, timeout)
        return content

    async def result_of(self, msg_id: str, timeout: float = 30) -> str:
        """The text/plain execute_result of request `msg_id`."""
        _, _, _, result = await self.wait(
            lambda ch, h, p, c: p.get("msg_id") == msg_id and h["msg_type"] == "execute_result", timeout
        )
        return result["data"]["text/plain"]

    async def idle_after(self, msg_id: str, timeout: float = 30) -> None:
        await self.wait(lambda ch, h, p, c: ch == "iopub" and p.get("msg_id") == msg_id and c.get("execution_state") == "idle", timeout)


def execute_content(code: str, allow_stdin: bool = False) -> dict[str, Any]:
    return {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": allow_stdin, "stop_on_error": True}


async def kernel_info_until_ready(peer: Peer, timeout: float = 60) -> None:
    """kernel_info until both the reply and its iopub status arrived (the SUB is live)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg_id = peer.send("shell", "kernel_info_request", {})
        try:
            await peer.reply_to(msg_id, "kernel_info_reply", timeout=5)
            await peer.wait(lambda ch, h, p, c, sent=msg_id: ch == "iopub" and p.get("msg_id") == sent, timeout=1)
            return
        except TimeoutError:
            continue
    raise TimeoutError("kernel never answered kernel_info")


@contextlib.asynccontextmanager
async def ready_peer(manager: AsyncKernelManager, transport: str) -> AsyncIterator[Peer]:
    """A `Peer` on `manager`'s kernel once it answers kernel_info; its sockets closed afterwards.

    Connected only once the kernel listens, as the server does (see
    `wait_listening`): libzmq retrying a port not bound yet can connect to
    itself, and the kernel's stdin messages are then lost.
    """
    info = manager.get_connection_info(session=False)
    await wait_listening(info)
    peer = Peer(info, transport)
    try:
        await kernel_info_until_ready(peer)
        yield peer
    finally:
        peer.sockets.close()


@pytest.fixture(params=["tcp", "ipc"])
async def kernel(tmp_path, request) -> AsyncIterator[AsyncKernelManager]:
    """A python3 kernel on TCP ports or on ipc (libzmq's Unix sockets at `{ip}-{port}`)."""
    options = {"transport": "ipc", "ip": str(tmp_path / "k")} if request.param == "ipc" else {}
    km = AsyncKernelManager(kernel_name="python3", connection_file=str(tmp_path / "kernel.json"), **options)
    await km.start_kernel()
    try:
        yield km
    finally:
        await km.shutdown_kernel(now=True)


TRANSPORTS = pytest.mark.parametrize("transport", ["zmtp", "pyzmq"])


@TRANSPORTS
async def test_all_channels(kernel, transport):
    async with ready_peer(kernel, transport) as peer:
        assert isinstance(peer.sockets, ZMTPKernelSockets if transport == "zmtp" else KernelSockets)
        # control
        msg_id = peer.send("control", "kernel_info_request", {})
        assert (await peer.reply_to(msg_id, "kernel_info_reply"))["status"] == "ok"
        # shell + iopub
        msg_id = peer.send("shell", "execute_request", execute_content("6 * 7"))
        assert await peer.result_of(msg_id) == "42"
        await peer.idle_after(msg_id)
        # stdin: the kernel asks on stdin (addressed to our identity), we answer there
        msg_id = peer.send("shell", "execute_request", execute_content("input('name? ')", allow_stdin=True))
        _, request, _, content = await peer.wait(lambda ch, h, p, c: ch == "stdin" and h["msg_type"] == "input_request")
        assert content["prompt"] == "name? "
        peer.send("stdin", "input_reply", {"value": "zasper"}, parent=request)
        assert await peer.result_of(msg_id) == "'zasper'"
        assert peer.batches > 0


@TRANSPORTS
async def test_ten_megabyte_output_and_input(kernel, transport):
    async with ready_peer(kernel, transport) as peer:
        # 10 MB from the kernel (one stream message) ...
        msg_id = peer.send("shell", "execute_request", execute_content("print('x' * 10_000_000)"))
        await peer.idle_after(msg_id, timeout=60)
        text = "".join(
            orjson.loads(parts[3])["text"] for ch, parts in peer.received
            if ch == "iopub" and orjson.loads(parts[1]).get("msg_id") == msg_id and b'"stream"' in parts[0]
        )
        assert text == "x" * 10_000_000 + "\n"
        # ... and 10 MB to it (long frames outbound).
        msg_id = peer.send("shell", "execute_request", execute_content("len('" + "y" * 10_000_000 + "')"))
        assert await peer.result_of(msg_id, 60) == "10000000"


@TRANSPORTS
async def test_channels_reconnect_after_kill_and_restart(kernel, transport):
    async with ready_peer(kernel, transport) as peer:
        msg_id = peer.send("shell", "execute_request", execute_content("import os; os.getpid()"))
        pid = int(await peer.result_of(msg_id))
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(0.5)
        # Same ports, new process: the same sockets object must reconnect on its own.
        await kernel.restart_kernel(now=True)
        await kernel_info_until_ready(peer)
        msg_id = peer.send("shell", "execute_request", execute_content("import os; os.getpid()"))
        assert int(await peer.result_of(msg_id)) != pid
        msg_id = peer.send("control", "kernel_info_request", {})
        assert (await peer.reply_to(msg_id, "kernel_info_reply"))["status"] == "ok"


def test_unknown_transport_is_refused():
    with pytest.raises(ValueError, match="unknown kernel transport"):
        open_kernel_sockets({"transport": "tcp"}, b"id", lambda c, p: None, lambda: None, "carrier-pigeon")


def test_frame_and_metadata_encoding():
    assert encode_frame(b"abc", 1) == [b"\x01\x03", b"abc"]
    long = encode_frame(b"z" * 300)
    assert long[0] == b"\x02" + (300).to_bytes(8, "big")
    ready = ready_command("DEALER", b"me")
    assert ready[0] == 0x04 and ready[2:8] == b"\x05READY"
    assert parse_properties(ready[8:]) == {b"socket-type": b"DEALER", b"identity": b"me"}


async def test_libzmq_router_and_pub_peers_with_reconnect():
    """Identity routing, subscriptions, empty/short/long frames, and reconnect to a rebound peer."""
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    shell_port = router.bind_to_random_port("tcp://127.0.0.1")
    pub = ctx.socket(zmq.PUB)
    iopub_port = pub.bind_to_random_port("tcp://127.0.0.1")
    spare = ctx.socket(zmq.ROUTER)
    other_ports = [spare.bind_to_random_port("tcp://127.0.0.1") for _ in range(2)]
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": shell_port, "iopub_port": iopub_port,
            "control_port": other_ports[0], "stdin_port": other_ports[1]}
    got: list[tuple[str, list[bytes]]] = []
    sockets = ZMTPKernelSockets(info, b"client-id", lambda ch, parts: got.append((ch, parts)), lambda: None)
    try:
        parts = [b"h" * 10, b"", b"{}", b"c" * 70_000]
        sockets.send("shell", b"sig", parts)
        frames = await asyncio.wait_for(router.recv_multipart(), 10)
        assert frames == [b"client-id", DELIMITER, b"sig", *parts]
        # Publish until the subscription has reached the PUB (it drops messages before that).
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            await pub.send_multipart([b"topic", DELIMITER, b"s", b"{}", b"{}", b"{}", b"{}"])
            await asyncio.sleep(0.05)
        assert got and got[0] == ("iopub", [b"s", b"{}", b"{}", b"{}", b"{}"])
        await router.send_multipart([b"client-id", DELIMITER, b"s2", b"x" * 300, b"", b"", b""])
        deadline = time.monotonic() + 10
        while not any(ch == "shell" for ch, _ in got) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert ("shell", [b"s2", b"x" * 300, b"", b"", b""]) in got
        # The peer goes away and comes back on the same port: sends made meanwhile are delivered.
        router.close(linger=0)
        await asyncio.sleep(0.3)
        sockets.send("shell", b"sig", [b"after", b"{}", b"{}", b"{}"])
        router = ctx.socket(zmq.ROUTER)
        router.bind(f"tcp://127.0.0.1:{shell_port}")
        frames = await asyncio.wait_for(router.recv_multipart(), 10)
        assert frames == [b"client-id", DELIMITER, b"sig", b"after", b"{}", b"{}", b"{}"]
    finally:
        sockets.close()
        for s in (router, pub, spare):
            s.close(linger=0)
        ctx.term()


async def test_garbage_peer_is_dropped_without_crashing():
    """A peer that is not ZMTP gets disconnected and retried; nothing is delivered."""
    connections = 0
    # A handler on the logger itself: an app started in-process earlier in the
    # run may have turned off propagation to the root logger (so no caplog).
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("zasperhub.kernels").addHandler(handler)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"\x00" * 64)
        await writer.drain()
        try:
            await reader.read(1 << 16)
        finally:
            writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": port, "iopub_port": port, "control_port": port, "stdin_port": port}
    got: list[Any] = []
    sockets = ZMTPKernelSockets(info, b"id", lambda ch, parts: got.append(parts), lambda: None)
    try:
        deadline = time.monotonic() + 10
        while connections < 8 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert connections >= 8  # four channels, each reconnecting after the bad greeting
        assert any("not a ZMTP peer" in w for w in warnings), warnings
        assert got == []
    finally:
        logging.getLogger("zasperhub.kernels").removeHandler(handler)
        sockets.close()
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="module", params=["zmtp", "pyzmq", "zmtp-ipc"])
def zmtp_server(tmp_path_factory, request):
    transport, _, kernels = request.param.partition("-")
    extra = ["--AsyncKernelManager.transport=ipc"] if kernels == "ipc" else []
    with pytest.MonkeyPatch.context() as mp:
        # The server process inherits the environment it is started with.
        mp.setenv("ZASPERHUB_KERNEL_TRANSPORT", transport)
        srv = start_kernel_server(tmp_path_factory.mktemp("zmtp"), "--log-level=INFO", *extra)
    srv.kernels_ipc = kernels == "ipc"  # type: ignore[attr-defined]
    yield srv
    srv.stop()


@pytest.mark.parametrize("wire", ["legacy", "v1"])
async def test_server_over_zmtp(zmtp_server, wire):
    """The whole server over each transport: execute, restart, kill -9 and recover."""
    with zmtp_server.client() as http:
        kid = start_kernel(http)
        client = await KernelWS.connect(zmtp_server, kid, wire)
        try:
            out = await client.execute("import os; print('hi'); os.getpid()")
            assert out["stream"] == "hi\n"
            pid = int(out["result"]["text/plain"])
            assert ("ZMTP iopub channel ready" in zmtp_server.log()) == (zmtp_server.env["ZASPERHUB_KERNEL_TRANSPORT"] == "zmtp")
            # ipc kernels listen on Unix sockets in the runtime directory, tcp kernels on ports.
            info = orjson.loads((zmtp_server.runtime_dir / f"kernel-{kid}.json").read_bytes())
            assert info["transport"] == ("ipc" if zmtp_server.kernels_ipc else "tcp")
            os.kill(pid, signal.SIGKILL)
            await client.wait_for(lambda m: m["channel"] == "iopub" and m["content"].get("execution_state") == "restarting", 30)
        finally:
            await client.close()
        again = await KernelWS.connect(zmtp_server, kid, wire)
        try:
            out = await again.execute("import os; os.getpid()")
            assert int(out["result"]["text/plain"]) != pid
            r = await asyncio.to_thread(http.post, f"/api/kernels/{kid}/restart", json={})
            assert r.status_code == 200
            out = await again.execute("'back'", timeout=60)
            assert out["result"]["text/plain"] == "'back'"
        finally:
            await again.close()
            http.delete(f"/api/kernels/{kid}")


async def test_sends_before_the_kernel_listens_are_bounded():
    """Messages wait for the handshake up to MAX_PENDING_BYTES; beyond it send raises zmq.Again."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": port, "iopub_port": port, "control_port": port, "stdin_port": port}
    sockets = ZMTPKernelSockets(info, b"id", lambda ch, parts: None, lambda: None)
    try:
        chunk = b"x" * (8 * 1024 * 1024)
        sent = 0
        with pytest.raises(zmq.Again):
            for _ in range(20):
                sockets.send("shell", b"sig", [b"{}", b"{}", b"{}", chunk])
                sent += 1
        assert sent == 7  # 7 × 8 MiB fit under the 64 MiB cap, the 8th does not
        sockets.send("control", b"sig", [b"{}", b"{}", b"{}", b"{}"])  # other channels are unaffected
    finally:
        sockets.close()
    with pytest.raises(ConnectionError):
        sockets.send("shell", b"sig", [b"{}", b"{}", b"{}", b"{}"])


async def test_self_connect_releases_the_port_for_the_kernel():
    """A connection that landed on its own port (TCP self-connect) is dropped, so the kernel can bind it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    spare = ctx.socket(zmq.ROUTER)
    pub = ctx.socket(zmq.PUB)
    others = [spare.bind_to_random_port("tcp://127.0.0.1") for _ in range(2)]
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": port, "iopub_port": pub.bind_to_random_port("tcp://127.0.0.1"),
            "control_port": others[0], "stdin_port": others[1]}
    sockets = ZMTPKernelSockets(info, b"client-id", lambda ch, parts: None, lambda: None)
    try:
        shell = sockets.channels["shell"]
        # Force what chance produces while a kernel starts: source port == destination port.
        loop = asyncio.get_running_loop()
        raw = socket.socket()
        raw.setblocking(False)
        raw.bind(("127.0.0.1", port))
        await loop.sock_connect(raw, ("127.0.0.1", port))
        transport, _ = await loop.create_connection(lambda: _Link(shell, raw), sock=raw)
        assert transport.is_closing() and not shell.ready
        await asyncio.sleep(0.05)
        router.bind(f"tcp://127.0.0.1:{port}")  # the "kernel" gets its port
        sockets.send("shell", b"sig", [b"{}", b"{}", b"{}", b"{}"])
        frames = await asyncio.wait_for(router.recv_multipart(), 10)
        assert frames == [b"client-id", DELIMITER, b"sig", b"{}", b"{}", b"{}", b"{}"]
    finally:
        sockets.close()
        for s in (router, spare, pub):
            s.close(linger=0)
        ctx.term()
