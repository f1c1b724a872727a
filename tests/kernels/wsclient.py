"""A small kernel WebSocket client for tests, written from the protocol docs.

It is deliberately independent of the server's codecs (so a bug shared by
encoder and decoder cannot hide), speaks both wire formats and offers the
few helpers tests need: execute code and collect what comes back.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import struct
import time
import uuid
from typing import Any

import websockets

V1 = "v1.kernel.websocket.jupyter.org"

#: Kernel code registering comm target 'echo': it answers each message with its buffers reversed.
ECHO_COMM_SETUP = (
    "from comm import create_comm\n"
    "def _target(comm, msg):\n"
    "    @comm.on_msg\n"
    "    def _echo(m):\n"
    "        comm.send({'n': len(m['buffers'])}, buffers=[bytes(b)[::-1] for b in m['buffers']])\n"
    "get_ipython().kernel.comm_manager.register_target('echo', _target)\n"
)


def masked_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    """One client → server WebSocket frame, masked as RFC 6455 requires, built byte by byte."""
    mask = os.urandom(4)
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def new_header(msg_type: str, session: str) -> dict[str, Any]:
    return {
        "msg_id": uuid.uuid4().hex,
        "username": "test",
        "session": session,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "msg_type": msg_type,
        "version": "5.3",
    }


def encode_v1(channel: str, header: Any, parent: Any, metadata: Any, content: Any, buffers: list[bytes] = ()) -> bytes:
    parts = [json.dumps(x).encode() for x in (header, parent, metadata, content)] + list(buffers)
    chan = channel.encode()
    offsets = [8 * (len(parts) + 3)]
    offsets.append(offsets[0] + len(chan))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    table = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return table + chan + b"".join(parts)


def decode_v1(frame: bytes) -> dict[str, Any]:
    (n,) = struct.unpack("<Q", frame[:8])
    offsets = struct.unpack(f"<{n}Q", frame[8 : 8 * (n + 1)])
    pieces = [frame[offsets[i] : offsets[i + 1]] for i in range(n - 1)]
    msg = {
        "channel": pieces[0].decode(),
        "header": json.loads(pieces[1]),
        "parent_header": json.loads(pieces[2]),
        "metadata": json.loads(pieces[3]),
        "content": json.loads(pieces[4]),
        "buffers": pieces[5:],
    }
    return msg


def decode_legacy(frame: str | bytes) -> dict[str, Any]:
    if isinstance(frame, str):
        return json.loads(frame)
    (nbufs,) = struct.unpack("!I", frame[:4])
    offsets = list(struct.unpack(f"!{nbufs}I", frame[4 : 4 * (nbufs + 1)])) + [len(frame)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(nbufs)]
    msg = json.loads(parts[0])
    msg["buffers"] = parts[1:]
    return msg


def encode_legacy(channel: str, header: Any, parent: Any, metadata: Any, content: Any, buffers: list[bytes] = ()) -> str | bytes:
    msg = {"channel": channel, "header": header, "parent_header": parent, "metadata": metadata, "content": content}
    if not buffers:
        return json.dumps(msg)
    body = json.dumps(msg).encode()
    parts = [body, *buffers]
    offsets = [4 * (len(parts) + 1)]
    for p in parts[:-1]:
        offsets.append(offsets[-1] + len(p))
    return struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets) + b"".join(parts)


class KernelWS:
    """One WebSocket connection to a kernel."""

    def __init__(self, ws: Any, protocol: str, session: str) -> None:
        self.ws = ws
        self.protocol = protocol
        self.session = session

    @classmethod
    async def connect(
        cls, server: Any, kernel_id: str, protocol: str = "v1", session: str | None = None, headers: dict[str, str] | None = None
    ) -> KernelWS:
        session = session or uuid.uuid4().hex
        url = f"{server.ws_url}/api/kernels/{kernel_id}/channels?session_id={session}&token={server.token}"
        subprotocols = [V1] if protocol == "v1" else None
        ws = await websockets.connect(
            url, subprotocols=subprotocols, max_size=None, additional_headers=headers or {}, open_timeout=60
        )
        if protocol == "v1":
            assert ws.subprotocol == V1
        else:
            assert ws.subprotocol is None
        return cls(ws, protocol, session)

    async def send(self, channel: str, msg_type: str, content: dict[str, Any], buffers: list[bytes] = ()) -> dict[str, Any]:
        header = new_header(msg_type, self.session)
        encode = encode_v1 if self.protocol == "v1" else encode_legacy
        await self.ws.send(encode(channel, header, {}, {}, content, list(buffers)))
        return header

    async def recv(self, timeout: float = 30) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        if self.protocol == "v1":
            assert isinstance(frame, bytes)
            return decode_v1(frame)
        return decode_legacy(frame)

    async def execute(self, code: str, timeout: float = 60, allow_stdin: bool = False) -> dict[str, Any]:
        """Run code; returns {'reply', 'iopub': [...], 'stream': text, 'result': data or None}."""
        header = await self.send(
            "shell", "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": allow_stdin, "stop_on_error": True},
        )
        return await self.collect(header["msg_id"], timeout)

    async def collect(self, msg_id: str, timeout: float = 60) -> dict[str, Any]:
        reply = None
        idle = False
        iopub: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while reply is None or not idle:
            msg = await self.recv(max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["channel"] == "iopub":
                iopub.append(msg)
                if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
            elif msg["channel"] == "shell":
                reply = msg
        stream = "".join(m["content"]["text"] for m in iopub if m["header"]["msg_type"] == "stream")
        results = [m["content"]["data"] for m in iopub if m["header"]["msg_type"] == "execute_result"]
        return {"reply": reply, "iopub": iopub, "stream": stream, "result": results[0] if results else None}

    async def wait_for(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            msg = await self.recv(max(0.1, deadline - time.monotonic()))
            if predicate(msg):
                return msg

    async def close(self) -> None:
        await self.ws.close()
