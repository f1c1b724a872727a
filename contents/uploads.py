"""Chunked uploads: the contents API's `chunk` 1, 2, … -1 over several requests.

Each upload streams into the backend's `Upload` (a temp file on disk, an S3
multipart upload, a Drive resumable session), so a large file is never held
whole in memory, and nothing appears at the path until the last chunk.
Chunks must arrive in order; an upload left idle longer than the timeout is
aborted, so abandoned uploads do not pile up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from zasperhub.contents.base import Backend, Stat, Upload

log = logging.getLogger("zasperhub.contents")


@dataclasses.dataclass
class _Pending:
    upload: Upload
    next_chunk: int
    size: int = 0
    touched: float = dataclasses.field(default_factory=time.monotonic)
    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)


class ChunkedUploads:
    """The uploads in progress, by API path."""

    def __init__(self, backend: Backend, idle_timeout: Callable[[], float]) -> None:
        self.backend = backend
        self._idle_timeout = idle_timeout
        self._pending: dict[str, _Pending] = {}

    def size(self, path: str) -> int:
        """Bytes received so far for `path` (0 if no upload is in progress)."""
        pending = self._pending.get(path)
        return pending.size if pending else 0

    async def feed(self, path: str, chunk: int, data: bytes) -> Stat | None:
        """Add chunk number `chunk`; returns the file's Stat after the last one (-1)."""
        await self._expire()
        if chunk == 1:
            await self.discard(path)  # a restarted upload replaces the old one
            upload = await self.backend.begin_upload(path)
            pending = self._pending[path] = _Pending(upload, next_chunk=1)
        else:
            found = self._pending.get(path)
            if found is None:
                raise ValueError(f"No upload in progress for {path!r}: chunked uploads start with chunk 1")
            pending = found
        async with pending.lock:
            if self._pending.get(path) is not pending:
                raise ValueError(f"The upload of {path!r} was restarted or cancelled")
            if chunk != -1 and chunk != pending.next_chunk:
                await self.discard(path)
                raise ValueError(f"Chunk {chunk} of {path!r} out of order (expected {pending.next_chunk}); upload cancelled")
            try:
                if data:
                    await pending.upload.append(data)
                pending.size += len(data)
                pending.touched = time.monotonic()
                pending.next_chunk += 1
                if chunk != -1:
                    return None
                del self._pending[path]
                return await pending.upload.commit()
            except BaseException:
                self._pending.pop(path, None)
                await _quiet_abort(pending.upload)
                raise

    async def discard(self, path: str) -> None:
        """Abort the upload to `path`, if any."""
        pending = self._pending.pop(path, None)
        if pending is not None:
            await _quiet_abort(pending.upload)

    async def _expire(self) -> None:
        limit = time.monotonic() - self._idle_timeout()
        for path in [p for p, u in self._pending.items() if u.touched < limit and not u.lock.locked()]:
            log.info("Discarding chunked upload of %s: idle for too long", path)
            await self.discard(path)

    async def close(self) -> None:
        """Abort every unfinished upload."""
        for path in list(self._pending):
            await self.discard(path)


async def _quiet_abort(upload: Upload) -> None:
    try:
        await upload.abort()
    except Exception as e:  # the upload is dead either way; keep the first error
        log.warning("Aborting upload of %s failed: %s", upload.path, e)

