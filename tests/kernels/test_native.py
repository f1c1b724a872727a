"""The compiled kernel -> client path (`_native.c`) against independent oracles.

HMAC against hashlib; ZMTP framing and both wire formats against the Python
encoders (themselves checked against Jupyter Server's in test_wire_units.py);
the Router's decisions against kernel.py's rules with a stand-in kernel: what
it routes itself, and every case it must leave to Python.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import hmac
import json
import os
import random
import weakref

import pytest
from zasperhub.platform.kernels import native
from zasperhub.platform.kernels.codec import FrameError
from zasperhub.platform.kernels.codec_json import JSONCodec
from zasperhub.platform.kernels.codec_v1 import V1Codec
from zasperhub.platform.kernels.ws_direct import frame_header
from zasperhub.platform.kernels.zmtp import encode_message

from tests.kernels.wsclient import decode_legacy, encode_v1, masked_frame

_native = native._native

if os.environ.get("ZASPERHUB_REQUIRE_NATIVE") == "1":
    # The test script sets this: a build that silently fell back to Python must fail, not skip.
    assert _native is not None, "the _native extension was not built (see setup.py)"
pytestmark = pytest.mark.skipif(_native is None, reason="the _native extension is not built")

KEY = b"0123456789abcdef-key"
SESSION = "server-session"
DELIM = b"<IDS|MSG>"


def sign(parts: list[bytes], key: bytes = KEY) -> bytes:
    return hmac.new(key, b"".join(parts[:4]), hashlib.sha256).hexdigest().encode()


def message(msg_type: str, content: dict, parent: dict | None = None, buffers: list[bytes] = (),
            header_extra: dict | None = None, key: bytes = KEY) -> list[bytes]:
    """ZMTP frames of a kernel message: identities, delimiter, signature, parts."""
    header = {"msg_id": os.urandom(4).hex(), "msg_type": msg_type, "session": "kernel", "username": "k",
              "date": "2026-12-06T00:00:00Z", "version": "5.3", **(header_extra or {})}
    parts = [json.dumps(header).encode(), json.dumps(parent or {}).encode(), b"{}", json.dumps(content).encode(),
             *buffers]
    return [b"ident", DELIM, sign(parts, key) if key else b"", *parts]


# -- primitives ---------------------------------------------------------------------------


@pytest.mark.parametrize("key_len", [1, 20, 63, 64, 65, 200])
def test_hmac_matches_hashlib(key_len):
    rng = random.Random(key_len)
    key = rng.randbytes(key_len)
    signer = _native.Hmac(key)
    for size in (0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 70_000):
        parts = [rng.randbytes(size), rng.randbytes(size // 3), b"", rng.randbytes(7)]
        assert signer.sign(parts) == sign(parts, key)
        assert signer.sign([*parts, b"buffers are not signed"]) == sign(parts, key)
    assert signer.sign([b"x" * 300_000, b"", b"", b""]) is None, "large messages are left to OpenSSL"
    with pytest.raises(ValueError):
        signer.sign([b"too", b"few"])


def test_zmtp_message_matches_the_python_encoder():
    for parts in ([b""], [b"a"], [b"", b"x" * 255, b"y" * 256], [b"z" * 70_000, b"tail"]):
        assert _native.zmtp_message(parts) == b"".join(encode_message(parts))
    assert _native.zmtp_message([memoryview(b"view"), bytearray(b"array")]) == b"".join(encode_message([b"view", b"array"]))


class Writes:
    """A stand-in direct WebSocket: records writes, reports a settable backlog."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.backlog = 0
        self.too_slow: list[int] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)

    def buffered(self) -> int:
        return self.backlog

    def sink(self, v1: bool, limit: int = 1 << 20):
        return _native.ClientSink(self.write, self.buffered, self.too_slow.append, limit, v1)


def python_frame(codec, channel: str, parts: list[bytes]) -> bytes:
    frame, binary = codec.encode(channel, parts)
    return frame_header(0x2 if binary else 0x1, len(frame)) + bytes(frame)


SAMPLES = [
    ("iopub", message("status", {"execution_state": "busy"})[3:]),
    ("shell", message("execute_reply", {"status": "ok"}, {"msg_id": "p", "session": "s"})[3:]),
    ("iopub", message("comm_msg", {"data": {}}, buffers=[b"\x00\x01", b"", bytes(range(256)) * 300])[3:]),
    ("iopub", message("stream", {"text": "é" * 40_000})[3:]),  # a 16-bit and then a 64-bit frame length
    ("stdin", [b'{"msg_id":"a\\"b","msg_type":"input_request"}', b"", b"", b"{}"]),  # escaped id, empty parts
    ("iopub", [b"not json", b"{}", b"{}", b"{}"]),
]


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "legacy"])
def test_sink_encodes_exactly_like_the_python_codecs(v1):
    codec = V1Codec() if v1 else JSONCodec()
    out = Writes()
    sink = out.sink(v1)
    expected = b""
    for channel, parts in SAMPLES:
        sink.deliver(channel, parts)
        expected += python_frame(codec, channel, parts)
    assert sink.pending == len(expected) and out.data == []
    sink.flush()
    sink.flush()  # nothing new: no second write
    if v1:
        assert out.data == [expected]
    else:
        # The legacy splice takes msg_id/msg_type as written in the header; the Python codec
        # re-serializes them: the same JSON values, possibly spelled differently.
        assert len(out.data) == 1
        ours, theirs = split_frames(out.data[0]), split_frames(expected)
        assert [op for op, _ in ours] == [op for op, _ in theirs]
        for (op, a), (_, b) in zip(ours, theirs):
            if op == 0x1 and a != b:
                assert json.loads(a) == json.loads(b)
            else:
                assert a == b or legacy_binary_equal(a, b)


def split_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames, pos = [], 0
    while pos < len(data):
        op, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        frames.append((op, data[pos : pos + n]))
        pos += n
    return frames


def legacy_binary_equal(a: bytes, b: bytes) -> bool:
    return decode_legacy(a) == decode_legacy(b)


def test_sink_backlog_and_close():
    out = Writes()
    sink = out.sink(True, limit=10)
    sink.deliver("iopub", SAMPLES[0][1])
    out.backlog = 11
    sink.flush()
    assert out.too_slow == [11], "a client further behind than the limit is reported"
    with pytest.raises(ValueError):
        sink.deliver("iopub", [b"{}", b"{}"])
    sink.close()
    sink.deliver("iopub", SAMPLES[0][1])
    sink.flush()
    assert len(out.data) == 1 and sink.closed and sink.pending == 0


# -- the Router ---------------------------------------------------------------------------


def zmtp(frames: list[bytes]) -> bytes:
    return b"".join(encode_message(frames))


def route(router, channel: str, frames: list[bytes]) -> None:
    """One message from the kernel, read from its channel as zmtp.py hands it over."""
    _native.ZmtpReader(router, channel, lambda body: None).feed(zmtp(frames))



class Conn:
    def __init__(self, sink) -> None:
        self.native_sink = sink


class FakeKernel:
    """The attributes of ManagedKernel that native.py documents, nothing else."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._ready.set()
        self._silent: dict = {}
        self._connections: dict = {}
        self._by_session: dict = {}
        self._inflight: dict = {}
        self._overloaded = None
        self.execution_state = "starting"
        self.last_activity = 0.0
        self.answered: list = []
        self.slow: list = []
        self.errors: list = []
        self.pending_at_answer: list[int] = []

    def _answered(self, msg_id, header, content) -> None:
        self.pending_at_answer.append(sum(c.native_sink.pending for c in self._connections.values()))
        self.answered.append((msg_id, header, content))


@pytest.fixture
def rig():
    kernel = FakeKernel()
    writes = {name: Writes() for name in ("a", "b")}
    for name, w in writes.items():
        conn = Conn(w.sink(True))
        kernel._connections[name] = conn
        kernel._by_session[f"session-{name}"] = conn
    router = _native.Router(kernel, KEY, SESSION, lambda channel, frames: kernel.slow.append((channel, frames)),
                            kernel.errors.append)
    return kernel, writes, router


def flush_all(kernel: FakeKernel) -> None:
    for conn in kernel._connections.values():
        if hasattr(conn, "native_sink"):
            conn.native_sink.flush()


def test_status_is_tracked_and_broadcast(rig):
    kernel, writes, router = rig
    route(router, "iopub", message("status", {"execution_state": "busy"}))
    route(router, "iopub", message("stream", {"name": "stdout", "text": "hi"}))
    flush_all(kernel)
    assert kernel.execution_state == "busy" and kernel.last_activity > 0
    assert router.counts == (2, 0) and kernel.slow == []
    assert all(len(w.data) == 1 for w in writes.values()), "one write per client for the batch"
    route(router, "iopub", message("status", {"execution_state": "idle"}))
    assert kernel.execution_state == "idle"


def test_replies_go_to_the_requesting_session_only(rig):
    kernel, writes, router = rig
    route(router, "shell", message("complete_reply", {"status": "ok"}, {"msg_id": "r1", "session": "session-b"}))
    flush_all(kernel)
    assert writes["b"].data and not writes["a"].data
    # An unknown session (a client that left): every client gets it.
    route(router, "shell", message("complete_reply", {}, {"msg_id": "r2", "session": "gone"}))
    flush_all(kernel)
    assert len(writes["a"].data) == 1 and len(writes["b"].data) == 2


def test_execute_reply_settles_admission_after_delivery(rig):
    kernel, writes, router = rig
    kernel._inflight["req-1"] = True
    frames = message("execute_reply", {"status": "error"}, {"msg_id": "req-1", "session": "session-a"})
    route(router, "shell", frames)
    assert kernel.answered == [("req-1", frames[3], frames[6])]
    assert kernel.pending_at_answer[0] > 0, "the reply is queued for its client before admission moves on"
    # Without anything tracked, a reply is only delivered.
    kernel._inflight.clear()
    route(router, "shell", message("execute_reply", {"status": "ok"}, {"msg_id": "req-2", "session": "session-a"}))
    assert len(kernel.answered) == 1 and router.counts == (2, 0)


def expect_python(rig, channel: str, frames: list[bytes]) -> None:
    kernel, writes, router = rig
    before = router.counts
    route(router, channel, frames)
    flush_all(kernel)
    assert kernel.slow[-1] == (channel, frames), "the raw frames go to Python unchanged"
    assert router.counts == (before[0], before[1] + 1)
    assert not any(w.data for w in writes.values()), "nothing was delivered by the compiled path"


def test_a_kernel_that_is_not_ready_is_left_to_python(rig):
    rig[0]._ready.clear()
    expect_python(rig, "iopub", message("status", {"execution_state": "busy"}))


def test_server_requests_in_flight_are_left_to_python(rig):
    rig[0]._silent["x"] = [None, None, False]
    expect_python(rig, "iopub", message("stream", {"text": "x"}))


def test_an_idle_that_may_settle_admission_is_left_to_python(rig):
    rig[0]._inflight["req"] = True
    expect_python(rig, "iopub", message("status", {"execution_state": "idle"}, {"msg_id": "req"}))
    assert rig[0].execution_state == "starting", "Python records it"


def test_overload_tracking_is_left_to_python(rig):
    rig[0]._overloaded = "last"
    expect_python(rig, "iopub", message("status", {"execution_state": "idle"}))


def test_replies_to_the_server_itself_are_left_to_python(rig):
    expect_python(rig, "shell", message("kernel_info_reply", {}, {"msg_id": "n", "session": SESSION}))


def test_no_client_means_the_replay_buffer_in_python(rig):
    rig[0]._connections.clear()
    expect_python(rig, "iopub", message("stream", {"text": "x"}))


def test_a_client_without_a_sink_is_served_by_python(rig):
    rig[0]._connections["c"] = object()
    expect_python(rig, "iopub", message("stream", {"text": "x"}))


def test_bad_signatures_are_left_to_python_which_drops_them(rig):
    frames = message("stream", {"text": "x"})
    frames[2] = b"0" * 64
    expect_python(rig, "iopub", frames)


@pytest.mark.parametrize("frames", [
    [b"ident", b"no delimiter", b"x", b"{}", b"{}", b"{}", b"{}"],
    [DELIM, b"sig", b"{}", b"{}"],
    message("stream", {"text": "x" * 300_000}),
    message("status", {"execution_state": "busy"}, header_extra={"msg_type": "st\\u0061tus"}),
    [DELIM, b"", b"[1, 2]", b"{}", b"{}", b"{}"],
], ids=["no-delimiter", "too-few-parts", "large", "escaped-msg-type", "header-not-object"])
def test_uncommon_messages_are_left_to_python(rig, frames):
    if frames[0] == DELIM and len(frames) == 6:
        frames[1] = sign(frames[2:6])
    if b"st\\\\u0061tus" in frames[3]:  # json.dumps escaped our backslash: write the escape itself
        frames[3] = frames[3].replace(b"st\\\\u0061tus", b"st\\u0061tus")
        frames[2] = sign(frames[3:7])
    expect_python(rig, "iopub", frames)


def test_an_escaped_session_is_left_to_python(rig):
    frames = message("complete_reply", {}, {"session": "sess\u00e9"})
    frames[4] = b'{"session": "sess\\u00e9"}'
    frames[2] = sign(frames[3:7])
    expect_python(rig, "shell", frames)


def test_an_unsigned_kernel_is_routed_without_verification():
    kernel = FakeKernel()
    w = Writes()
    kernel._connections["a"] = Conn(w.sink(False))
    router = _native.Router(kernel, b"", SESSION, lambda *a: kernel.slow.append(a), kernel.errors.append)
    route(router, "iopub", message("stream", {"text": "x"}, key=b""))
    kernel._connections["a"].native_sink.flush()
    assert router.counts == (1, 0) and json.loads(split_frames(w.data[0])[0][1])["content"] == {"text": "x"}


# -- the reader -----------------------------------------------------------------------------


def test_reader_assembles_messages_split_anywhere(rig):
    kernel, writes, router = rig
    kernel._connections.clear()  # every message then reaches `slow` whole, so it can be compared
    msgs = [message("stream", {"text": "x" * n}) for n in (0, 300, 5000)]
    stream = b"".join(zmtp(m) for m in msgs)
    commands: list[bytes] = []
    for cut in (1, 2, 7, 64, 1000, len(stream)):
        kernel.slow.clear()
        reader = _native.ZmtpReader(router, "iopub", commands.append)
        for i in range(0, len(stream), cut):
            reader.feed(stream[i : i + cut])
        assert [f for _, f in kernel.slow] == msgs and reader.buffered == 0


def test_reader_passes_commands_and_rejects_broken_streams(rig):
    kernel, writes, router = rig
    commands: list[bytes] = []
    reader = _native.ZmtpReader(router, "shell", commands.append)
    ping = b"\x04PING\x00\x10ctx"
    reader.feed(bytes((0x04, len(ping))) + ping)
    assert commands == [ping]
    with pytest.raises(native.ProtocolError, match="inside a multipart"):
        _native.ZmtpReader(router, "shell", commands.append).feed(b"\x01\x01a" + bytes((0x04, len(ping))) + ping)
    with pytest.raises(native.ProtocolError, match="frame of"):
        _native.ZmtpReader(router, "shell", commands.append).feed(b"\x02" + (1 << 40).to_bytes(8, "big"))


def test_a_failing_callback_is_reported_and_the_message_not_routed_twice(rig):
    kernel, writes, router = rig

    def broken(msg_id, header, content):
        raise RuntimeError("boom")

    kernel._answered = broken
    kernel._inflight["req"] = True
    reader = _native.ZmtpReader(router, "shell", lambda body: None)
    reader.feed(zmtp(message("execute_reply", {"status": "ok"}, {"msg_id": "req", "session": "session-a"})))
    assert [type(e) for e in kernel.errors] == [RuntimeError]
    reader.feed(zmtp(message("complete_reply", {}, {"session": "session-a"})))
    flush_all(kernel)
    assert router.counts == (2, 0) and len(kernel.errors) == 1
    assert len(split_frames(writes["a"].data[0])) == 2, "each message delivered once"


# -- client -> server -------------------------------------------------------------------------


def test_ws_message_takes_exactly_one_final_masked_data_frame():
    for payload in (b"", b"x" * 125, b"y" * 126, b"z" * 65_536):
        assert _native.ws_message(masked_frame(0x2, payload), 1 << 20) == payload
    assert _native.ws_message(masked_frame(0x1, "héllo".encode()), 100) == "héllo"
    for data in (
        masked_frame(0x1, b"a", fin=False),             # a fragment
        masked_frame(0x1, b"a", rsv=0x40),              # reserved bits
        b"\x82\x01a",                                    # unmasked
        masked_frame(0x9, b"ping"),                      # control frame
        masked_frame(0x0, b"cont"),                      # continuation
        masked_frame(0x2, b"a") + masked_frame(0x2, b"b"),  # two frames
        masked_frame(0x2, b"abc")[:-1],                  # incomplete
        masked_frame(0x1, b"\xff\xfe"),                  # not UTF-8
        masked_frame(0x2, b"x" * 101),                   # over the size limit
    ):
        assert _native.ws_message(data, 100) is None, data[:4]


def test_v1_decode_agrees_with_the_python_decoder(monkeypatch):
    python = V1Codec()
    monkeypatch.setattr(native, "v1_decode", None)
    good = [
        encode_v1("shell", {"msg_id": "1"}, {}, {}, {"code": "1"}),
        encode_v1("stdin", {"msg_id": "2"}, {"a": 1}, {}, {}, [b"buf", b""]),
    ]
    for frame in good:
        assert _native.v1_decode(frame) == python.decode(frame)
    big = encode_v1("shell", {}, {}, {}, {}, [b"b" * 70_000])
    assert _native.v1_decode(big) is None and python.decode(big)[1][4] == b"b" * 70_000
    bad = [
        b"\x01",
        (3).to_bytes(8, "little") + b"\x00" * 24,
        good[0][:16] + (1).to_bytes(8, "little") + good[0][24:],  # offsets go backwards
        encode_v1("nope", {}, {}, {}, {}),
        good[0][:8] + b"\xff" * 8 + good[0][16:],  # an offset past the end
    ]
    for frame in bad:
        assert _native.v1_decode(frame) is None
        with pytest.raises(FrameError):
            python.decode(frame)


def test_reference_cycles_through_the_compiled_objects_are_collected():
    """A connection holds its sink, the sink the connection's write; a kernel its Router and back."""
    class Connection:
        def write(self, data: bytes) -> None:
            pass

        def buffered(self) -> int:
            return 0

    conn = Connection()
    conn.sink = _native.ClientSink(conn.write, conn.buffered, lambda n: None, 10, True)
    kernel = FakeKernel()
    kernel.router = _native.Router(kernel, KEY, SESSION, kernel.slow.append, kernel.errors.append)
    kernel.reader = _native.ZmtpReader(kernel.router, "iopub", kernel.slow.append)
    gone = [weakref.ref(conn), weakref.ref(kernel)]
    del conn, kernel
    gc.collect()
    assert [ref() for ref in gone] == [None, None]


def test_a_reader_closed_by_a_callback_routes_nothing_more(rig):
    kernel, writes, router = rig
    kernel._connections.clear()  # every message goes to the fallback, which closes the reader
    seen = []

    def fallback_then_close(channel, frames):
        seen.append(frames)
        reader.close()

    router2 = _native.Router(kernel, KEY, SESSION, fallback_then_close, kernel.errors.append)
    reader = _native.ZmtpReader(router2, "iopub", lambda body: None)
    reader.feed(zmtp(message("stream", {"text": "1"})) + zmtp(message("stream", {"text": "2"})))
    assert len(seen) == 1 and reader.buffered == 0
    reader.feed(zmtp(message("stream", {"text": "3"})))
    assert len(seen) == 1
