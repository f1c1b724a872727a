"""The kernel WebSocket server side (platform/kernels/ws_direct.py) at the byte level.

A raw TCP client writes frames the way real networks deliver them — several
in one segment, one split into single bytes, fragmented messages, control
frames in between — and reads the server's answers itself.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from typing import Any

from tests.kernels.conftest import start_kernel
from tests.kernels.wsclient import masked_frame, new_header


class RawWS:
    """A legacy-protocol WebSocket client over a plain socket (client frames masked, as RFC 6455 requires)."""

    def __init__(self, server: Any, kernel_id: str, early: bytes = b"") -> None:
        """Connect; `early` is sent in the same segment as the handshake (before the 101, as RFC 6455 forbids)."""
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /api/kernels/{kernel_id}/channels?session_id=raw-{os.urandom(4).hex()}&token={server.token} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            + early
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "server closed during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.buf = b""
        self.session = os.urandom(8).hex()

    frame = staticmethod(masked_frame)

    def execute_frame(self, code: str) -> tuple[str, bytes]:
        header = new_header("execute_request", self.session)
        msg = {"header": header, "parent_header": {}, "metadata": {}, "channel": "shell",
               "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
        return header["msg_id"], json.dumps(msg).encode()

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return first & 0x0F, self._read(n)

    def results(self, msg_ids: set[str], timeout: float = 60) -> dict[str, str]:
        """execute_result text by request, until every request in `msg_ids` has one."""
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while set(found) != msg_ids and time.monotonic() < deadline:
            opcode, payload = self.recv()
            if opcode != 0x1:
                continue
            msg = json.loads(payload)
            parent = msg["parent_header"].get("msg_id")
            if parent in msg_ids and msg["msg_type"] == "execute_result":
                found[parent] = msg["content"]["data"]["text/plain"]
        return found


async def test_frames_coalesced_split_and_fragmented(kserver, http):
    kid = start_kernel(http)
    ws = RawWS(kserver, kid)
    try:
        a, fa = ws.execute_frame("1 + 1")
        b, fb = ws.execute_frame("2 + 2")
        c, fc = ws.execute_frame("'c' * 3")
        d, fd = ws.execute_frame("'d' * 40000")  # 16-bit extended length
        # Two whole frames and a ping in one segment.
        ws.sock.sendall(ws.frame(0x1, fa) + ws.frame(0x9, b"are you there") + ws.frame(0x1, fb))
        # One frame trickled byte by byte.
        for byte in ws.frame(0x1, fc):
            ws.sock.sendall(bytes([byte]))
        # A fragmented text message with a ping between its fragments.
        half = len(fd) // 2
        ws.sock.sendall(ws.frame(0x1, fd[:half], fin=False) + ws.frame(0x9, b"mid") + ws.frame(0x0, fd[half:]))
        results = ws.results({a, b, c, d})
        assert results == {a: "2", b: "4", c: "'ccc'", d: repr("d" * 40000)}
    finally:
        ws.sock.close()
        http.delete(f"/api/kernels/{kid}")


async def test_frames_sent_with_the_handshake_are_not_lost(kserver, http):
    """Bytes tornado read past the request keep the connection on tornado's stream (the fallback path)."""
    kid = start_kernel(http)
    session = os.urandom(8).hex()
    try:
        first = RawWS.__new__(RawWS)
        first.session = session
        a, fa = first.execute_frame("40 + 2")
        b, fb = first.execute_frame("'x' * 3")
        ws = RawWS(kserver, kid, early=RawWS.frame(0x1, fa) + RawWS.frame(0x9, b"early ping"))
        ws.sock.sendall(ws.frame(0x1, fb))
        assert ws.results({a, b}) == {a: "42", b: "'xxx'"}
    finally:
        ws.sock.close()
        http.delete(f"/api/kernels/{kid}")


async def test_pings_are_answered(kserver, http):
    kid = start_kernel(http)
    ws = RawWS(kserver, kid)
    try:
        ws.sock.sendall(ws.frame(0x9, b"one") + ws.frame(0x9, b"two"))
        pongs = []
        deadline = time.monotonic() + 30
        while len(pongs) < 1 and time.monotonic() < deadline:
            opcode, payload = ws.recv()
            if opcode == 0xA:
                pongs.append(payload)
        # RFC 6455 lets a server answer only the latest of pings it has not answered yet.
        assert pongs and pongs[-1] in (b"one", b"two")
    finally:
        ws.sock.close()
        http.delete(f"/api/kernels/{kid}")


async def test_protocol_violations_close_the_connection(kserver, http):
    """Each violation gets a close frame with its code and a reason, and the connection ends."""
    kid = start_kernel(http)
    unmasked = struct.pack("!BB", 0x81, 2) + b"{}"
    try:
        for bad, code in (
            (RawWS.frame(0x1, b"{}", rsv=0x40), 1002),  # an extension bit nobody negotiated
            (RawWS.frame(0x9, b"x", fin=False), 1002),  # a fragmented control frame
            (RawWS.frame(0x0, b"{}"), 1002),  # a continuation with nothing to continue
            (RawWS.frame(0x3, b"{}"), 1002),  # a reserved opcode
            (unmasked, 1002),  # client frames must be masked
            (RawWS.frame(0x1, b"\xff\xfe{}"), 1007),  # text that is not UTF-8
        ):
            ws = RawWS(kserver, kid)
            try:
                ws.sock.sendall(bad)
                deadline = time.monotonic() + 30
                opcode, payload = 0, b""
                while opcode != 0x8 and time.monotonic() < deadline:
                    opcode, payload = ws.recv()
                assert opcode == 0x8 and struct.unpack("!H", payload[:2])[0] == code, (bad, payload)
                assert payload[2:], "a close reason"
                ws.sock.settimeout(10)
                assert ws.sock.recv(1) == b"", "the server ends the connection"
            finally:
                ws.sock.close()
        # The kernel and new clients are unaffected.
        ws = RawWS(kserver, kid)
        try:
            e, fe = ws.execute_frame("'still here'")
            ws.sock.sendall(ws.frame(0x1, fe))
            assert ws.results({e}) == {e: "'still here'"}
        finally:
            ws.sock.close()
    finally:
        http.delete(f"/api/kernels/{kid}")


async def test_clean_close_is_echoed(kserver, http):
    kid = start_kernel(http)
    ws = RawWS(kserver, kid)
    try:
        ws.sock.sendall(ws.frame(0x8, struct.pack("!H", 1000) + b"bye"))
        deadline = time.monotonic() + 30
        opcode, payload = 0, b""
        while opcode != 0x8 and time.monotonic() < deadline:
            opcode, payload = ws.recv()
        assert opcode == 0x8 and payload[:2] == struct.pack("!H", 1000)
    finally:
        ws.sock.close()
        http.delete(f"/api/kernels/{kid}")
