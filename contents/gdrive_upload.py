"""Resumable Drive uploads fed piece by piece (`DriveBackend.begin_upload`).

Bytes are buffered only until a whole chunk (a multiple of 256 KiB, as Drive
requires) can be sent; each chunk goes out through googleapiclient's
resumable-upload machinery on the backend's worker threads, with the same
retries as every other call (after a failure the client asks the session how
far it got and resumes from there).  Drive creates or replaces the file only
when the final byte arrives, so readers see the old file or the new one,
never a mix.  An aborted session is simply abandoned; Drive discards
unfinished sessions after a week.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from googleapiclient.http import HttpRequest, MediaIoBaseUpload, MediaUpload

from zasperhub.contents.base import Stat, Upload
from zasperhub.contents.gdrive_api import DriveClient

#: Drive rejects non-final chunks that are not multiples of this.
CHUNK_GRANULARITY = 256 * 1024


class BytesMedia(MediaIoBaseUpload):
    """Media handed to the transport as bytes, never as a stream.

    googleapiclient sends resumable chunks of stream-backed media as a
    one-shot stream slice; when google-auth answers a 401 by refreshing and
    replaying the request, that slice is already consumed and the replay
    hangs with an empty body.  Bytes can be sent twice.
    """

    def has_stream(self) -> bool:
        return False


class GrowingMedia(MediaUpload):
    """A MediaUpload whose bytes arrive over time; its size is known only at the end."""

    def __init__(self, mimetype: str, chunksize: int) -> None:
        self._mimetype = mimetype
        self._chunksize = chunksize
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]
        self.total = 0
        self.final = False

    def chunksize(self) -> int:
        return self._chunksize

    def mimetype(self) -> str:
        return self._mimetype

    def size(self) -> int | None:
        return self.total if self.final else None

    def resumable(self) -> bool:
        return True

    def has_stream(self) -> bool:
        return False

    def getbytes(self, begin: int, length: int) -> bytes:
        start = begin - self._base
        if start < 0:
            raise ValueError("upload asked for bytes that were already acknowledged")
        return bytes(self._buf[start : start + length])

    def add(self, data: bytes) -> None:
        self._buf.extend(data)
        self.total += len(data)

    def forget_before(self, offset: int) -> None:
        """Drop bytes the store has acknowledged (keeps memory at about one chunk)."""
        drop = min(offset - self._base, len(self._buf))
        if drop > 0:
            del self._buf[:drop]
            self._base += drop

    def pending(self, progress: int) -> int:
        return self.total - progress

    def to_json(self) -> str:  # pragma: no cover - sessions are never serialized
        raise NotImplementedError("GrowingMedia cannot be serialized")


class DriveUpload(Upload):
    """One resumable session; created by `DriveBackend.begin_upload`.

    `start` builds the files.create/files.update request (decided when the
    upload begins) on a worker thread; the session itself is opened with the
    first chunk, on a transport owned by this upload so concurrent uploads and
    the worker threads never share an httplib2 connection.
    """

    def __init__(self, client: DriveClient, path: str, media: GrowingMedia,
                 make_request: Callable[[Any, GrowingMedia], HttpRequest], on_done: Callable[[dict[str, Any]], Stat]) -> None:
        self.client = client
        self.path = path
        self.media = media
        self._make_request = make_request
        self._on_done = on_done
        self._http = client.new_http()
        self._request: HttpRequest | None = None
        self._result: dict[str, Any] | None = None
        self._closed = False

    def _progress(self) -> int:
        return self._request.resumable_progress if self._request is not None else 0

    def _step(self, service: Any) -> dict[str, Any] | None:
        if self._request is None:
            self._request = self._make_request(service, self.media)
        _, body = self._request.next_chunk(http=self._http)
        self.media.forget_before(self._request.resumable_progress)
        return body

    async def append(self, data: bytes) -> None:
        if self._closed:
            raise OSError(errno.EINVAL, "upload already committed or aborted", self.path)
        self.media.add(data)
        # Only whole chunks go out before commit (Drive needs 256 KiB multiples),
        # and never the last buffered byte: the final request must carry data
        # because an empty range cannot say "this is the end".
        while self.media.pending(self._progress()) > self.media.chunksize():
            await self.client.run(self._step, self.path)

    async def commit(self) -> Stat:
        if self._closed:
            raise OSError(errno.EINVAL, "upload already committed or aborted", self.path)
        self.media.final = True
        try:
            while self._result is None:
                self._result = await self.client.run(self._step, self.path)
        except BaseException:
            # The session stays resumable only while the caller holds it; a
            # failed commit can be retried by calling commit() again.
            self.media.final = False
            raise
        self._close()
        return self._on_done(self._result)

    async def abort(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self.media = GrowingMedia(self.media.mimetype(), self.media.chunksize())
            self._http.http.close()
