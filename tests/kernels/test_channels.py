"""The kernel WebSocket: both wire formats, several clients, replacement, stdin, replay, bad frames."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid

import httpx
import pytest
import websockets

from tests.kernels.conftest import start_kernel
from tests.kernels.wsclient import ECHO_COMM_SETUP, V1, KernelWS, encode_v1, new_header

PROTOCOLS = ["v1", "legacy"]
REQUIRED_HEADER = ("msg_id", "msg_type", "session", "username", "version")


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_execute_round_trip(kserver, kernel_id, protocol):
    client = await KernelWS.connect(kserver, kernel_id, protocol)
    try:
        out = await client.execute("print('hi'); 6 * 7")
        assert out["reply"]["content"]["status"] == "ok"
        assert out["stream"] == "hi\n"
        assert out["result"]["text/plain"] == "42"
        for msg in [out["reply"], *out["iopub"]]:
            for field in REQUIRED_HEADER:
                assert isinstance(msg["header"][field], str)
            assert isinstance(msg["parent_header"], dict)
            assert isinstance(msg["metadata"], dict)
            if protocol == "legacy":
                assert msg["msg_type"] == msg["header"]["msg_type"]
                assert msg["msg_id"] == msg["header"]["msg_id"]
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_binary_buffers_both_ways(kserver, kernel_id, protocol):
    """A comm message with binary buffers travels client → kernel → client intact."""
    client = await KernelWS.connect(kserver, kernel_id, protocol)
    try:
        assert (await client.execute(ECHO_COMM_SETUP))["reply"]["content"]["status"] == "ok"
        comm_id = uuid.uuid4().hex
        await client.send("shell", "comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
        payload = bytes(range(256)) * 10
        await client.send("shell", "comm_msg", {"comm_id": comm_id, "data": {}}, buffers=[payload, b"abc"])
        msg = await client.wait_for(lambda m: m["header"]["msg_type"] == "comm_msg" and m["channel"] == "iopub")
        assert msg["content"]["data"] == {"n": 2}
        assert [bytes(b) for b in msg["buffers"]] == [payload[::-1], b"cba"]
    finally:
        await client.close()


async def test_two_clients_share_iopub_but_not_replies(kserver, kernel_id, http):
    a = await KernelWS.connect(kserver, kernel_id, "v1")
    b = await KernelWS.connect(kserver, kernel_id, "legacy")
    try:
        assert http.get(f"/api/kernels/{kernel_id}").json()["connections"] == 2
        out = await a.execute("print('shared')")
        msg_id = out["reply"]["parent_header"]["msg_id"]
        seen = []
        while True:
            msg = await b.recv(30)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(msg)
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert all(m["channel"] == "iopub" for m in seen)
        assert any(m["header"]["msg_type"] == "stream" for m in seen)
        # b's own request is answered to b only
        out_b = await b.execute("1")
        assert out_b["reply"]["content"]["status"] == "ok"
    finally:
        await a.close()
        await b.close()


async def test_same_session_replaces_old_connection(kserver, kernel_id):
    session = uuid.uuid4().hex
    first = await KernelWS.connect(kserver, kernel_id, "v1", session=session)
    second = await KernelWS.connect(kserver, kernel_id, "v1", session=session)
    try:
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(100):
                await first.recv(10)
        assert first.ws.close_code == 1000
        out = await second.execute("'still here'")
        assert out["result"]["text/plain"] == "'still here'"
    finally:
        await second.close()


async def test_stdin_input(kserver, kernel_id):
    client = await KernelWS.connect(kserver, kernel_id, "v1")
    try:
        header = await client.send(
            "shell", "execute_request",
            {"code": "x = input('name? '); print('got', x)", "silent": False, "store_history": False,
             "user_expressions": {}, "allow_stdin": True, "stop_on_error": True},
        )
        req = await client.wait_for(lambda m: m["channel"] == "stdin")
        assert req["header"]["msg_type"] == "input_request"
        assert req["content"]["prompt"] == "name? "
        await client.send("stdin", "input_reply", {"value": "zasper"})
        out = await client.collect(header["msg_id"])
        assert "got zasper" in out["stream"]
    finally:
        await client.close()


async def test_output_while_disconnected_is_replayed_to_next_client(kserver, http):
    kid = start_kernel(http)
    try:
        first = await KernelWS.connect(kserver, kid, "v1")
        await first.send(
            "shell", "execute_request",
            {"code": "import time; time.sleep(1.5); print('produced while away')", "silent": False,
             "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        )
        await first.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        await first.close()
        await asyncio.sleep(2.5)
        # A different browser session of the same notebook gets the output.
        second = await KernelWS.connect(kserver, kid, "legacy")
        try:
            msg = await second.wait_for(lambda m: m["header"]["msg_type"] == "stream", timeout=10)
            assert msg["content"]["text"] == "produced while away\n"
        finally:
            await second.close()
    finally:
        http.delete(f"/api/kernels/{kid}")


async def test_ws_requires_token_and_allowed_origin(kserver, kernel_id):
    url = f"{kserver.ws_url}/api/kernels/{kernel_id}/channels"
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(url, subprotocols=[V1])
    assert info.value.response.status_code in (401, 403)
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(url + f"?token={kserver.token}", origin="http://evil.example", subprotocols=[V1])
    assert info.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as info:
        await websockets.connect(f"{kserver.ws_url}/api/kernels/{uuid.uuid4()}/channels?token={kserver.token}")
    assert info.value.response.status_code == 404
    # Header auth (what Jupyter Server's GatewayClient sends) works.
    ws = await websockets.connect(url, additional_headers=kserver.headers)
    await ws.close()


def _bad_v1_offsets() -> bytes:
    frame = bytearray(encode_v1("shell", new_header("kernel_info_request", "s"), {}, {}, {}))
    frame[16:24] = struct.pack("<Q", 10**9)
    return bytes(frame)


def _raw_v1(*parts: bytes) -> bytes:
    offsets = [8 * (len(parts) + 2)]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


BAD_FRAMES = {
    "legacy-bad-json": ("legacy", "{not json", "not valid JSON"),
    "legacy-unknown-channel": ("legacy", json.dumps({"channel": "nope", "header": new_header("x", "s")}), "unknown channel"),
    "legacy-no-header": ("legacy", json.dumps({"channel": "shell", "content": {}}), "no header"),
    "legacy-bad-binary-offsets": ("legacy", struct.pack("!II", 3, 999) + b"xx", "binary frame"),
    "v1-wrong-offsets": ("v1", _bad_v1_offsets(), "offsets"),
    "v1-text-frame": ("v1", "hello", "binary frames"),
    "v1-unknown-channel": ("v1", encode_v1("bogus", new_header("x", "s"), {}, {}, {}), "unknown channel"),
    "v1-header-not-json": ("v1", _raw_v1(b"shell", b"{oops", b"{}", b"{}", b"{}"), "header is not valid JSON"),
    "v1-empty": ("v1", b"", "too short"),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_malformed_frames_close_with_clear_error(kserver, kernel_id, http, case):
    protocol, frame, expected = BAD_FRAMES[case]
    client = await KernelWS.connect(kserver, kernel_id, protocol)
    bystander = await KernelWS.connect(kserver, kernel_id, "v1")
    try:
        await client.ws.send(frame)
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(100):
                await client.recv(10)
        assert client.ws.close_code == 1007
        assert expected in client.ws.close_reason
        assert expected in kserver.log()
        # The kernel and its other clients are unharmed.
        out = await bystander.execute("'ok'")
        assert out["result"]["text/plain"] == "'ok'"
    finally:
        await bystander.close()
    assert http.get("/api").status_code == 200


async def test_huge_frame_is_refused_without_harm(kserver, kernel_id):
    client = await KernelWS.connect(kserver, kernel_id, "v1")
    with pytest.raises(websockets.ConnectionClosed):
        # The server may close (1009) as soon as it has read the frame's
        # length, while this send is still writing the body.
        await client.ws.send(encode_v1("shell", new_header("execute_request", "s"), {}, {}, {"code": "x" * 2_000_000}))
        for _ in range(100):
            await client.recv(10)
    assert client.ws.close_code == 1009
    again = await KernelWS.connect(kserver, kernel_id, "v1")
    try:
        assert (await again.execute("1 + 1"))["result"]["text/plain"] == "2"
    finally:
        await again.close()


async def test_connections_count_follows_clients(kserver, kernel_id):
    async with httpx.AsyncClient(base_url=kserver.url, headers=kserver.headers) as http:
        before = (await http.get(f"/api/kernels/{kernel_id}")).json()["connections"]
        client = await KernelWS.connect(kserver, kernel_id, "legacy")
        assert (await http.get(f"/api/kernels/{kernel_id}")).json()["connections"] == before + 1
        await client.close()
        for _ in range(50):
            if (await http.get(f"/api/kernels/{kernel_id}")).json()["connections"] == before:
                break
            await asyncio.sleep(0.1)
        assert (await http.get(f"/api/kernels/{kernel_id}")).json()["connections"] == before
