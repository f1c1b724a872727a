"""The bridge's bounds: a slow client is cut off, the replay buffer keeps only the newest output."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time

from tests.kernels.conftest import start_kernel
from tests.kernels.wsclient import V1, KernelWS

# 8 MB of output, paced (~4 MB/s) so a client that does read keeps within the
# 2 MiB per-client cap even on a loaded machine, while one that never reads
# falls behind for certain.
FLOOD = "import time\nfor _ in range(40):\n    print('x' * 200_000, flush=True)\n    time.sleep(0.05)"


def _raw_ws_that_never_reads(server, kernel_id: str) -> socket.socket:
    """A WebSocket client with a tiny receive window that stops reading after the handshake."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/kernels/{kernel_id}/channels?session_id=slow&token={server.token} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {V1}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(1)
        assert chunk, "server closed during handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def test_slow_client_is_disconnected_and_others_get_everything(kserver, http):
    kid = start_kernel(http)
    slow = _raw_ws_that_never_reads(kserver, kid)
    fast = await KernelWS.connect(kserver, kid, "v1")
    try:
        assert http.get(f"/api/kernels/{kid}").json()["connections"] == 2
        out = await fast.execute(FLOOD, timeout=120)
        assert out["reply"]["content"]["status"] == "ok"
        assert len(out["stream"]) == 40 * 200_001
        deadline = time.monotonic() + 30
        while "Client too slow" not in kserver.log() and "bytes behind" not in kserver.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert "bytes behind (limit 2097152)" in kserver.log()
        assert http.get(f"/api/kernels/{kid}").json()["connections"] == 1
    finally:
        slow.close()
        await fast.close()
        http.delete(f"/api/kernels/{kid}")


async def test_replay_buffer_keeps_newest_within_its_bound(kserver, http):
    kid = start_kernel(http)
    try:
        client = await KernelWS.connect(kserver, kid, "v1")
        code = "import time; time.sleep(1)\nfor i in range(20): print(f'{i:04d}' + 'y' * 100_000, flush=True)\nprint('last line')"
        await client.send("shell", "execute_request", {"code": code, "silent": False, "store_history": False,
                                                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        await client.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        await client.close()
        deadline = time.monotonic() + 60
        while http.get(f"/api/kernels/{kid}").json()["execution_state"] != "idle" and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
        again = await KernelWS.connect(kserver, kid, "v1")
        try:
            texts = []
            while True:
                msg = await again.recv(10)
                if msg["header"]["msg_type"] == "stream":
                    texts.append(msg["content"]["text"])
                if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
        finally:
            await again.close()
        replayed = "".join(texts)
        # ~2 MB were printed; at most the 256 KiB bound came back, and it is the newest part.
        assert 0 < len(replayed) <= 262144
        assert replayed.endswith("last line\n")
        assert "0000" + "y" * 10 not in replayed
        assert "buffered messages were dropped" in kserver.log()
    finally:
        http.delete(f"/api/kernels/{kid}")
