"""Client-side codecs for the two kernel WebSocket wire formats.

``legacy``: one JSON text frame per message with a ``channel`` key.
``v1``: the ``v1.kernel.websocket.jupyter.org`` binary frame: a little-endian
uint64 count ``n``, then ``n`` uint64 offsets, then the channel name and the
header, parent_header, metadata, content (and buffer) parts, each a slice
between consecutive offsets.

The load client decodes as little as it needs: header and parent header for
matching, content only for ``status`` messages.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"


@dataclass(slots=True)
class Incoming:
    """What the load client needs to know about one received message."""

    channel: str
    msg_type: str
    parent_msg_id: str | None
    execution_state: str | None
    #: length of text carried by a ``stream`` message (0 otherwise).
    stream_chars: int


class Codec(Protocol):
    """Encode outgoing requests and decode incoming frames of one wire format."""

    name: str
    subprotocols: list[str]

    def encode(self, channel: str, header: dict[str, Any], content: dict[str, Any]) -> str | bytes: ...

    def decode(self, frame: str | bytes) -> Incoming: ...


def _incoming(channel: str, header: dict[str, Any], parent: dict[str, Any], content_of: Any) -> Incoming:
    msg_type = header.get("msg_type", "")
    state = None
    chars = 0
    if msg_type == "status":
        state = content_of().get("execution_state")
    elif msg_type == "stream":
        chars = len(content_of().get("text", ""))
    return Incoming(channel, msg_type, parent.get("msg_id") if parent else None, state, chars)


class LegacyCodec:
    """Legacy JSON text frames (no subprotocol offered)."""

    name = "legacy"
    subprotocols: list[str] = []

    def encode(self, channel: str, header: dict[str, Any], content: dict[str, Any]) -> str:
        msg = {"channel": channel, "header": header, "parent_header": {}, "metadata": {}, "content": content, "buffers": []}
        return orjson.dumps(msg).decode()

    def decode(self, frame: str | bytes) -> Incoming:
        if isinstance(frame, bytes) and frame[:1] != b"{":
            # Messages with binary buffers use the legacy binary framing:
            # uint32 big-endian count, offsets, then the JSON message first.
            (nbufs,) = struct.unpack_from("!I", frame, 0)
            offsets = struct.unpack_from(f"!{nbufs}I", frame, 4)
            end = offsets[1] if nbufs > 1 else len(frame)
            frame = frame[offsets[0]:end]
        msg = orjson.loads(frame)
        return _incoming(msg.get("channel", ""), msg["header"], msg.get("parent_header") or {}, lambda: msg.get("content") or {})


class V1Codec:
    """``v1.kernel.websocket.jupyter.org`` binary frames."""

    name = "v1"
    subprotocols = [V1_SUBPROTOCOL]

    def encode(self, channel: str, header: dict[str, Any], content: dict[str, Any]) -> bytes:
        parts = [channel.encode(), orjson.dumps(header), b"{}", b"{}", orjson.dumps(content)]
        count = len(parts) + 1
        offsets = [8 * (count + 1)]
        for part in parts:
            offsets.append(offsets[-1] + len(part))
        return struct.pack(f"<{count + 1}Q", count, *offsets) + b"".join(parts)

    def decode(self, frame: str | bytes) -> Incoming:
        if isinstance(frame, str):
            raise ValueError("v1 protocol expects binary frames, got text")
        (count,) = struct.unpack_from("<Q", frame, 0)
        if count < 6 or 8 * (count + 1) > len(frame):
            raise ValueError(f"bad v1 frame: {count} offsets in {len(frame)} bytes")
        off = struct.unpack_from(f"<{count}Q", frame, 8)
        view = memoryview(frame)
        channel = bytes(view[off[0]:off[1]]).decode()
        header = orjson.loads(view[off[1]:off[2]])
        parent = orjson.loads(view[off[2]:off[3]])
        return _incoming(channel, header, parent, lambda: orjson.loads(view[off[4]:off[5]]))


CODECS: dict[str, type[LegacyCodec] | type[V1Codec]] = {"legacy": LegacyCodec, "v1": V1Codec}


def make_codec(name: str) -> LegacyCodec | V1Codec:
    """Return the codec called ``name`` (``legacy`` or ``v1``)."""
    try:
        return CODECS[name]()
    except KeyError:
        raise ValueError(f"unknown wire format {name!r}; choose from {sorted(CODECS)}") from None
