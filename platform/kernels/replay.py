"""The bounded per-kernel buffer for messages no client was connected to receive.

Policy (what is kept, and when):

* Only while a kernel has **no** WebSocket client connected.  Everything it
  says then (output, replies, status) is kept here and handed to the next
  client of the kernel — any client, since a kernel belongs to one notebook,
  so a reopened tab or another browser sees the output produced meanwhile.
  While a client is connected nothing is recorded: a message delivered to a
  client is never replayed, and no tail of delivered output is kept.
* Per kernel at most `max_messages` messages and `max_bytes` bytes; the
  server-wide `ReplayBudget` bounds all kernels' buffers together, so 64
  abandoned kernels that keep printing cannot hold 64 × `max_bytes`.
* When a new message would exceed a bound the *oldest* messages of that
  kernel are dropped (the newest output is what a returning user needs); if
  the server-wide budget is still exceeded the new message is dropped.  The
  number dropped is reported with the replay.  A single message larger than
  `max_bytes` is not kept at all.
* Sizes count the parts plus a fixed per-part and per-message overhead, so a
  flood of tiny status messages is bounded by memory, not only by count.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

Entry = tuple[str, Sequence[bytes]]

#: Approximate Python overhead of one kept message and of each of its parts
#: (tuple and list objects, bytes headers), counted against the byte caps.
MESSAGE_OVERHEAD = 120
PART_OVERHEAD = 40


class ReplayBudget:
    """Bytes all replay buffers of one server may hold together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class ReplayBuffer:
    """FIFO of (channel, parts) with message and byte caps, dropping oldest."""

    def __init__(self, max_bytes: int, max_messages: int, budget: ReplayBudget | None = None) -> None:
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.budget = budget
        self._entries: collections.deque[tuple[str, Sequence[bytes], int]] = collections.deque()
        self.nbytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _over(self) -> bool:
        return (
            self.nbytes > self.max_bytes
            or len(self._entries) > self.max_messages
            or (self.budget is not None and self.budget.used > self.budget.limit)
        )

    def add(self, channel: str, parts: Sequence[bytes]) -> None:
        """Keep a message, evicting the oldest ones beyond the caps."""
        size = MESSAGE_OVERHEAD + sum(len(p) + PART_OVERHEAD for p in parts)
        if size > self.max_bytes or self.max_messages <= 0:
            self.dropped += 1
            return
        self._entries.append((channel, parts, size))
        self._grow(size)
        while self._entries and self._over():
            _, _, old = self._entries.popleft()
            self._grow(-old)
            self.dropped += 1

    def _grow(self, delta: int) -> None:
        self.nbytes += delta
        if self.budget is not None:
            self.budget.used += delta

    def drain(self) -> tuple[list[Entry], int]:
        """All kept messages in order and how many were dropped; empties the buffer."""
        entries = [(channel, parts) for channel, parts, _ in self._entries]
        dropped = self.dropped
        self.clear()
        self.dropped = 0
        return entries, dropped

    def clear(self) -> None:
        """Forget every kept message, returning its bytes to the budget (kernel gone)."""
        self._entries.clear()
        self._grow(-self.nbytes)
