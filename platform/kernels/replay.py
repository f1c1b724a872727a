"""The bounded per-kernel buffer for messages no client was connected to receive.

While a kernel has no WebSocket client, everything it says (output, replies,
status) is kept here and handed to the next client of the kernel — any
client, since a kernel belongs to one notebook, so a reopened tab or another
browser sees the output produced meanwhile.

Policy: the buffer holds at most `max_messages` messages and `max_bytes`
bytes of parts; when a new message would exceed either bound the *oldest*
messages are dropped (the newest output is what a returning user needs), and
the number dropped is reported with the replay.  A single message larger
than `max_bytes` is not kept at all.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

Entry = tuple[str, Sequence[bytes]]


class ReplayBuffer:
    """FIFO of (channel, parts) with message and byte caps, dropping oldest."""

    def __init__(self, max_bytes: int, max_messages: int) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self._entries: collections.deque[tuple[str, Sequence[bytes], int]] = collections.deque()
        self.nbytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, channel: str, parts: Sequence[bytes]) -> None:
        """Keep a message, evicting the oldest ones beyond the caps."""
        size = sum(len(p) for p in parts)
        if size > self.max_bytes or self.max_messages <= 0:
            self.dropped += 1
            return
        self._entries.append((channel, parts, size))
        self.nbytes += size
        while self.nbytes > self.max_bytes or len(self._entries) > self.max_messages:
            _, _, old = self._entries.popleft()
            self.nbytes -= old
            self.dropped += 1

    def drain(self) -> tuple[list[Entry], int]:
        """All kept messages in order and how many were dropped; empties the buffer."""
        entries = [(channel, parts) for channel, parts, _ in self._entries]
        dropped = self.dropped
        self._entries.clear()
        self.nbytes = 0
        self.dropped = 0
        return entries, dropped
