"""Codecs, signing and the replay buffer, checked against Jupyter Server's reference functions."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_binary_message,
    serialize_msg_to_ws_v1,
)
from zasperhub.platform.kernels.codec import (
    V1_SUBPROTOCOL,
    FrameError,
    choose_subprotocol,
    codec_for,
)
from zasperhub.platform.kernels.codec_json import JSONCodec
from zasperhub.platform.kernels.codec_v1 import V1Codec
from zasperhub.platform.kernels.replay import (
    MESSAGE_OVERHEAD,
    PART_OVERHEAD,
    ReplayBudget,
    ReplayBuffer,
)
from zasperhub.platform.kernels.signing import Signer

HEADER = {"msg_id": "m1", "msg_type": "execute_result", "session": "s", "username": "u", "version": "5.3", "date": "2026-01-01T00:00:00Z"}
PARENT = {"msg_id": "p1", "msg_type": "execute_request", "session": "c", "username": "u", "version": "5.3"}
PARTS = [json.dumps(x).encode() for x in (HEADER, PARENT, {"m": 1}, {"data": {"text/plain": "42"}, "execution_count": 1})]


def test_subprotocol_negotiation():
    assert choose_subprotocol([V1_SUBPROTOCOL]) == V1_SUBPROTOCOL
    assert choose_subprotocol(["other", V1_SUBPROTOCOL]) == V1_SUBPROTOCOL
    assert choose_subprotocol([]) is None
    assert choose_subprotocol(["v2.unknown"]) is None
    assert isinstance(codec_for(V1_SUBPROTOCOL), V1Codec)
    assert isinstance(codec_for(None), JSONCodec)


@pytest.mark.parametrize("buffers", [[], [b"\x00\x01", b"", b"x" * 70000]])
def test_v1_matches_jupyter_server(buffers):
    frame, binary = V1Codec().encode("iopub", PARTS + buffers)
    assert binary
    assert frame == serialize_msg_to_ws_v1(PARTS + buffers, "iopub")
    channel, parts = deserialize_msg_from_ws_v1(frame)
    assert channel == "iopub" and parts == PARTS + buffers
    # and back: what Jupyter Server's encoder makes, we decode
    channel, parts = V1Codec().decode(serialize_msg_to_ws_v1(PARTS + buffers, "shell"))
    assert channel == "shell"
    assert [bytes(p) for p in parts] == PARTS + buffers


def test_legacy_text_matches_jupyter_server_shape():
    frame, binary = JSONCodec().encode("iopub", PARTS)
    assert not binary
    msg = json.loads(frame)
    assert msg == {
        "header": HEADER, "msg_id": "m1", "msg_type": "execute_result", "parent_header": PARENT,
        "metadata": {"m": 1}, "content": {"data": {"text/plain": "42"}, "execution_count": 1},
        "channel": "iopub", "buffers": [],
    }


def test_legacy_binary_matches_jupyter_server():
    frame, binary = JSONCodec().encode("iopub", PARTS + [b"abc", b"\xff" * 10])
    assert binary
    msg = deserialize_binary_message(frame)
    assert msg["buffers"] == [b"abc", b"\xff" * 10]
    assert msg["content"]["execution_count"] == 1 and msg["channel"] == "iopub"
    reference = serialize_binary_message(
        {"header": HEADER, "parent_header": PARENT, "metadata": {}, "content": {"a": 1}, "channel": "shell", "buffers": [b"12", b"345"]}
    )
    channel, parts = JSONCodec().decode(reference)
    assert channel == "shell"
    assert json.loads(parts[0]) == HEADER and json.loads(parts[3]) == {"a": 1}
    assert [bytes(p) for p in parts[4:]] == [b"12", b"345"]


def test_legacy_decode_fills_missing_parts():
    channel, parts = JSONCodec().decode(json.dumps({"channel": "control", "header": HEADER}))
    assert channel == "control"
    assert parts[1:] == [b"{}", b"{}", b"{}"]


@pytest.mark.parametrize(
    "frame",
    [
        b"", b"\x01", (3).to_bytes(8, "little"), (10**6).to_bytes(8, "little") + b"\x00" * 8,
        # offsets decreasing
        (6).to_bytes(8, "little") + b"".join(v.to_bytes(8, "little") for v in (56, 61, 60, 62, 62, 62)) + b"shell" * 3,
        "text frame",
    ],
)
def test_v1_rejects_malformed(frame):
    with pytest.raises(FrameError):
        V1Codec().decode(frame)


@pytest.mark.parametrize(
    "frame",
    ["", "[]", "{bad", '{"channel": "shell"}', '{"channel": "x", "header": {}}', '{"channel": "shell", "header": {}, "content": 3}',
     b"\x00\x00\x00\x00", b"\x00\x00\x00\x02\x00\x00\x00\x0c\x00\x00\x00\x01"],
)
def test_legacy_rejects_malformed(frame):
    with pytest.raises(FrameError):
        JSONCodec().decode(frame)


def test_signer_matches_hmac_and_rejects_tampering():
    key = b"secret-key"
    signer = Signer(key)
    expected = hmac.new(key, b"".join(PARTS), hashlib.sha256).hexdigest().encode()
    assert signer.sign(PARTS) == expected
    assert signer.verify(expected, PARTS)
    assert not signer.verify(expected, [PARTS[0], PARTS[1], PARTS[2], b"{}"])
    assert Signer(b"").sign(PARTS) == b""
    with pytest.raises(ValueError):
        Signer(key, "hmac-nope")


def test_replay_buffer_bounds_drop_oldest():
    buf = ReplayBuffer(max_bytes=100_000, max_messages=3)
    for i in range(5):
        buf.add("iopub", [bytes([i]) * 10])
    assert len(buf) == 3
    entries, dropped = buf.drain()
    assert dropped == 2
    assert [parts[0][0] for _, parts in entries] == [2, 3, 4]
    assert len(buf) == 0 and buf.nbytes == 0
    # Sizes count a fixed overhead per message and part.
    one = MESSAGE_OVERHEAD + PART_OVERHEAD + 60
    buf = ReplayBuffer(max_bytes=one + 30, max_messages=100)
    buf.add("iopub", [b"x" * 60])
    buf.add("iopub", [b"y" * 60])  # over the byte cap: the older one goes
    buf.add("iopub", [b"z" * 200])  # alone bigger than the cap: not kept
    entries, dropped = buf.drain()
    assert [parts[0][:1] for _, parts in entries] == [b"y"]
    assert dropped == 2


def test_replay_budget_bounds_all_kernels_together():
    one = MESSAGE_OVERHEAD + PART_OVERHEAD + 100
    budget = ReplayBudget(limit=3 * one)
    a, b = ReplayBuffer(10 * one, 100, budget), ReplayBuffer(10 * one, 100, budget)
    for _ in range(3):
        a.add("iopub", [b"a" * 100])
    assert budget.used == 3 * one
    b.add("iopub", [b"b" * 100])  # over the shared budget, b has nothing older: the new one goes
    assert len(b) == 0 and b.dropped == 1 and budget.used == 3 * one
    a.add("iopub", [b"A" * 100])  # a drops its own oldest
    assert len(a) == 3 and a.dropped == 1
    a.drain()
    assert budget.used == 0
    b.add("iopub", [b"b" * 100])
    b.clear()
    assert budget.used == 0 and len(b) == 0
