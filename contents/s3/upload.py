"""Chunked uploads to S3 as real multipart uploads.

Pieces arrive in order (the contents API's `chunk` 1, 2, … -1).  They are
buffered only up to one part (S3's minimum part size is 5 MiB, except for the
last part), so a large upload never sits in memory as a whole.  Nothing is
visible at the key until `CompleteMultipartUpload`; any failure aborts the
multipart upload so no orphaned parts are billed.  An upload that stays
smaller than one part is written with a single PUT on commit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zasperhub.contents.base import Stat, Upload

if TYPE_CHECKING:
    from zasperhub.contents.s3.backend import S3Backend

log = logging.getLogger("zasperhub.contents.s3")


class S3Upload(Upload):
    """One upload in progress to API `path` of an `S3Backend`."""

    def __init__(self, backend: "S3Backend", path: str, part_size: int) -> None:
        self.backend = backend
        self.path = path
        self.part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    @property
    def key(self) -> str:
        return self.backend.key(self.path)

    async def append(self, data: bytes) -> None:
        if self._done:
            raise ValueError(f"upload to {self.path} is already finished")
        self._buffer += data
        # Parts grow every 1,000 parts so that S3's 10,000-part limit is never hit.
        if len(self._buffer) >= self.part_size * (1 + len(self._parts) // 1000):
            await self._guarded(self._flush_part())

    async def commit(self) -> Stat:
        if self._done:
            raise ValueError(f"upload to {self.path} is already finished")
        if self._upload_id is None:
            # Small upload: one all-or-nothing PUT, no multipart bookkeeping.
            data = bytes(self._buffer)
            self._buffer = bytearray()
            self._done = True
            return await self.backend.write(self.path, data)
        await self._guarded(self._complete())
        self._done = True
        return await self.backend.stat(self.path)

    async def abort(self) -> None:
        self._buffer = bytearray()
        self._done = True
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        try:
            await self.backend.call("abort_multipart_upload", self.path, Bucket=self.backend.bucket, Key=self.key, UploadId=upload_id)
        except FileNotFoundError:
            pass  # already completed or aborted elsewhere
        except OSError as exc:
            # The parts stay until a bucket lifecycle rule removes them; say so.
            log.warning("Could not abort multipart upload %s of %s: %s", upload_id, self.path, exc)

    # -- internals -----------------------------------------------------------------
    async def _guarded(self, step: Any) -> None:
        """Run one step; on any failure abort the multipart upload, then re-raise."""
        try:
            await step
        except BaseException:
            await self.abort()
            raise

    async def _flush_part(self) -> None:
        if self._upload_id is None:
            created = await self.backend.call(
                "create_multipart_upload", self.path, Bucket=self.backend.bucket, Key=self.key,
                ContentType=self.backend.content_type(self.path),
            )
            self._upload_id = created["UploadId"]
        body, self._buffer = bytes(self._buffer), bytearray()
        number = len(self._parts) + 1
        response = await self.backend.call(
            "upload_part", self.path, Bucket=self.backend.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=body
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def _complete(self) -> None:
        if self._buffer or not self._parts:
            await self._flush_part()
        await self.backend.call(
            "complete_multipart_upload", self.path, Bucket=self.backend.bucket, Key=self.key, UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        self._upload_id = None
