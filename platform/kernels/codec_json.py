"""The legacy JSON wire format (no subprotocol), as Jupyter Server speaks it.

Kernel → client: a text frame holding one JSON object with `header`,
`msg_id`, `msg_type`, `parent_header`, `metadata`, `content`, `buffers` and
`channel`.  The kernel's parts are already JSON, so the object is spliced
together from them as bytes; only the small header is parsed, for the
top-level `msg_id`/`msg_type` copies.  A message with binary buffers goes as
a binary frame::

    nbufs | offset_0 … offset_{nbufs-1} | json | buffer_1 | …   (uint32 big-endian)

where nbufs counts the JSON part and offset_i is where part i starts.

Client → kernel: the same shapes; here the JSON must be parsed (the client
sends one object, the kernel wants four parts).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import orjson
from zasperhub.platform.kernels.codec import CHANNELS, Codec, FrameError

_MAX_BUFFERS = 4096


def _splice(channel: str, parts: Sequence[bytes], with_buffers_key: bool) -> bytes:
    header = parts[0]
    try:
        parsed = orjson.loads(header)
        ids = orjson.dumps(parsed.get("msg_id", "")) + b',"msg_type":' + orjson.dumps(parsed.get("msg_type", ""))
    except (orjson.JSONDecodeError, AttributeError):
        ids = b'"","msg_type":""'
    pieces = [
        b'{"header":', header,
        b',"msg_id":', ids,
        b',"parent_header":', parts[1] or b"{}",
        b',"metadata":', parts[2] or b"{}",
        b',"content":', parts[3] or b"{}",
        b',"channel":"', channel.encode("ascii"), b'"',
    ]
    if with_buffers_key:
        pieces.append(b',"buffers":[]')
    pieces.append(b"}")
    return b"".join(pieces)


class JSONCodec(Codec):
    """Legacy JSON text frames (binary frames only for messages with buffers)."""

    subprotocol = None

    def encode(self, channel: str, parts: Sequence[bytes]) -> tuple[bytes, bool]:
        if len(parts) <= 4:
            return _splice(channel, parts, True), False
        body = _splice(channel, parts, False)
        buffers = parts[4:]
        nbufs = len(buffers) + 1
        offsets = [4 * (nbufs + 1)]
        offsets.append(offsets[0] + len(body))
        for buf in buffers[:-1]:
            offsets.append(offsets[-1] + len(buf))
        table = struct.pack(f"!{nbufs + 1}I", nbufs, *offsets)
        return b"".join((table, body, *buffers)), True

    def decode(self, frame: bytes | str) -> tuple[str, list[bytes]]:
        buffers: list[bytes] = []
        if isinstance(frame, str):
            raw: Any = frame
        else:
            raw, buffers = _split_binary(frame)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise FrameError(f"frame is not valid JSON: {e}") from None
        if not isinstance(msg, dict):
            raise FrameError("frame must be a JSON object")
        channel = msg.get("channel")
        if not isinstance(channel, str) or channel not in CHANNELS:
            raise FrameError(f"unknown channel {str(channel)[:40]!r}")
        header = msg.get("header")
        if not isinstance(header, dict):
            raise FrameError("message has no header object")
        parts = [orjson.dumps(header)]
        for key in ("parent_header", "metadata", "content"):
            value = msg.get(key)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise FrameError(f"message field {key!r} must be an object")
            parts.append(orjson.dumps(value))
        return channel, parts + buffers


def _split_binary(frame: bytes) -> tuple[memoryview, list[bytes]]:
    """The JSON part and buffers of a legacy binary frame."""
    size = len(frame)
    if size < 8:
        raise FrameError(f"binary frame too short ({size} bytes)")
    nbufs = int.from_bytes(frame[:4], "big")
    if nbufs < 1 or nbufs > _MAX_BUFFERS:
        raise FrameError(f"binary frame declares {nbufs} parts")
    table_end = 4 * (nbufs + 1)
    if table_end > size:
        raise FrameError("binary frame's offset table is longer than the frame")
    offsets = list(struct.unpack(f"!{nbufs}I", frame[4:table_end]))
    offsets.append(size)
    previous = table_end
    for value in offsets:
        if value < previous or value > size:
            raise FrameError(f"binary frame offsets must increase within the frame (offset {value}, frame {size} bytes)")
        previous = value
    view = memoryview(frame)
    parts = [view[offsets[i] : offsets[i + 1]] for i in range(nbufs)]
    return parts[0], parts[1:]  # type: ignore[return-value]
