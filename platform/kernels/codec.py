"""The interface shared by the kernel WebSocket wire formats.

A message in flight is a channel name plus its raw parts: the serialized
header, parent header, metadata and content (JSON bytes, exactly as the
kernel or client produced them) followed by binary buffers.  Codecs convert
between that and one WebSocket frame; they never look inside the parts
except where the format itself demands it (the legacy format has to be
parsed when a client sends it).

The format is chosen once per connection from the negotiated subprotocol:
`v1.kernel.websocket.jupyter.org` selects the binary v1 codec, no
subprotocol the legacy JSON codec (what Jupyter Server does).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

#: Channels a client may talk to; anything else is a malformed frame.
CHANNELS = frozenset({"shell", "control", "stdin", "iopub"})

V1_SUBPROTOCOL = "v1.kernel.websocket.jupyter.org"


class FrameError(ValueError):
    """A client frame that cannot be turned into a kernel message."""


class Codec(abc.ABC):
    """Encodes kernel messages into WebSocket frames and decodes client frames."""

    #: Subprotocol the codec answers to (None for the legacy format).
    subprotocol: str | None = None

    @abc.abstractmethod
    def encode(self, channel: str, parts: Sequence[bytes]) -> tuple[bytes | str, bool]:
        """One frame for the client, and whether it is binary."""

    @abc.abstractmethod
    def decode(self, frame: bytes | str) -> tuple[str, list[bytes]]:
        """The channel and the raw parts of a client frame; raises `FrameError`."""


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to select from the client's offer (None: legacy)."""
    return V1_SUBPROTOCOL if V1_SUBPROTOCOL in offered else None


def codec_for(subprotocol: str | None) -> Codec:
    """The codec for a negotiated subprotocol."""
    if subprotocol == V1_SUBPROTOCOL:
        from zasperhub.platform.kernels.codec_v1 import V1Codec

        return V1Codec()
    from zasperhub.platform.kernels.codec_json import JSONCodec

    return JSONCodec()
