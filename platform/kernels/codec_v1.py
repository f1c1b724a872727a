"""The `v1.kernel.websocket.jupyter.org` wire format: an offset table plus raw parts.

Frame layout (all integers unsigned 64-bit little-endian)::

    n | offset_0 … offset_{n-1} | channel | header | parent | metadata | content | buffers…

`offset_0` is where the channel name starts and each following offset is
where the previous part ends, so part i spans offset_i … offset_{i+1}.
Kernel messages already are those parts, so encoding is concatenation and
decoding is slicing: no JSON is parsed in either direction.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from zasperhub.platform.kernels import native
from zasperhub.platform.kernels.codec import CHANNELS, V1_SUBPROTOCOL, Codec, FrameError

#: Offsets for channel + header, parent, metadata, content (fewer is malformed).
_MIN_OFFSETS = 6
#: A frame cannot hold more parts than this; larger tables are malformed.
_MAX_OFFSETS = 4096


class V1Codec(Codec):
    """Binary offsets format, the one JupyterLab prefers."""

    subprotocol = V1_SUBPROTOCOL

    def encode(self, channel: str, parts: Sequence[bytes]) -> tuple[bytes, bool]:
        chan = channel.encode("ascii")
        count = len(parts) + 2
        position = 8 * (count + 1)
        offsets = [count, position]
        position += len(chan)
        offsets.append(position)
        for part in parts:
            position += len(part)
            offsets.append(position)
        return b"".join((struct.pack(f"<{count + 1}Q", *offsets), chan, *parts)), True

    def decode(self, frame: bytes | str) -> tuple[str, list[bytes]]:
        fast = native.v1_decode  # valid frames in one call (native.py); anything else takes the checks below
        if fast is not None and not isinstance(frame, str):
            decoded = fast(frame)
            if decoded is not None:
                return decoded
        if isinstance(frame, str):
            raise FrameError("v1 protocol expects binary frames, got a text frame")
        size = len(frame)
        if size < 8:
            raise FrameError(f"v1 frame too short for its offset count ({size} bytes)")
        count = int.from_bytes(frame[:8], "little")
        if count < _MIN_OFFSETS or count > _MAX_OFFSETS:
            raise FrameError(f"v1 frame declares {count} offsets (expected {_MIN_OFFSETS}..{_MAX_OFFSETS})")
        table_end = 8 * (count + 1)
        if table_end > size:
            raise FrameError(f"v1 offset table ({table_end} bytes) is longer than the frame ({size} bytes)")
        view = memoryview(frame)
        offsets = struct.unpack_from(f"<{count}Q", frame, 8)
        previous = table_end
        for value in offsets:
            if value < previous or value > size:
                raise FrameError(f"v1 offsets must increase within the frame (offset {value}, frame {size} bytes)")
            previous = value
        try:
            channel = bytes(view[offsets[0] : offsets[1]]).decode("ascii")
        except UnicodeDecodeError:
            raise FrameError("v1 channel name is not ASCII") from None
        if channel not in CHANNELS:
            raise FrameError(f"unknown channel {channel[:40]!r}")
        # Header … content become bytes (they are signed and small); buffers
        # stay zero-copy views into the frame.
        parts: list[bytes] = [bytes(view[offsets[i] : offsets[i + 1]]) for i in range(1, 5)]
        parts.extend(view[offsets[i] : offsets[i + 1]] for i in range(5, count - 1))  # type: ignore[misc]
        return channel, parts
