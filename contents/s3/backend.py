"""`S3Backend`: the storage primitives on an S3 bucket under a key prefix.

Layout: API path ``a/b.ipynb`` is the object ``<prefix>a/b.ipynb``; a
directory ``a`` is the key prefix ``<prefix>a/`` plus, when created with
`mkdir`, a zero-byte marker object ``<prefix>a/`` so that an empty directory
persists.  A directory exists if its marker or any object below it exists,
so folders written by other S3 tools (without markers) work too.

Every boto3 call runs in the backend's own small thread pool, never on the
event loop, and every failure is translated once, in `call`, into the
contract's `OSError` family (see `errors.py`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import functools
import mimetypes
import posixpath
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from traitlets import MetaHasTraits

from zasperhub.contents.base import Backend, PreconditionFailed, Stat, Upload
from zasperhub.contents.s3.config import S3Settings
from zasperhub.contents.s3.errors import translate
from zasperhub.contents.s3.upload import S3Upload

T = TypeVar("T")
#: S3's limit on parts of one multipart upload.
MAX_PARTS = 10_000
#: DeleteObjects accepts at most this many keys per request.
DELETE_BATCH = 1000
#: A recursive delete repeats listing until nothing is left; stores that keep
#: emptied folders as entries (SeaweedFS) need one round per nesting level.
MAX_DELETE_ROUNDS = 64
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{2,254}$")
_MARKER_TYPE = "application/x-directory"


class _ConfigurableABCMeta(MetaHasTraits, type(Backend)):  # type: ignore[misc]
    """Lets one class be both a traitlets Configurable and an abstract Backend."""


def _utc(value: datetime.datetime | None) -> datetime.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


class S3Backend(S3Settings, Backend, metaclass=_ConfigurableABCMeta):
    """Notebooks and files as objects in ``s3://bucket/prefix``."""

    scheme = "s3"

    def __init__(self, bucket: str, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not _BUCKET_RE.match(bucket):
            raise ValueError(f"invalid S3 bucket name {bucket!r} (3-255 characters: lowercase letters, digits, '.', '-', '_')")
        self.refuse_cli_secrets()
        self.bucket = bucket
        parts = [p for p in prefix.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"invalid S3 prefix {prefix!r}")
        self.prefix = "/".join(parts) + "/" if parts else ""
        self.client = self.make_client()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="zasper-s3")

    @classmethod
    def from_url(cls, url: str, *, root_dir: str, parent: Any) -> "S3Backend":
        """Build from ``s3://bucket/prefix`` (root_dir is not used: nothing is local)."""
        parsed = urlsplit(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"expected s3://bucket/prefix, got {url!r}")
        if parsed.query or parsed.fragment or "@" in parsed.netloc:
            raise ValueError("put S3 settings and credentials in S3Backend config or the environment, not in the URL")
        return cls(bucket=parsed.netloc, prefix=parsed.path, parent=parent)

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    # -- plumbing ----------------------------------------------------------------------
    def key(self, path: str) -> str:
        """Object key of API path `path` (rejects anything that could leave the root)."""
        parts = path.strip("/").split("/") if path.strip("/") else []
        if any(p in ("", ".", "..") for p in parts):
            raise PermissionError(13, f"Invalid path: {path!r}", path)
        return self.prefix + "/".join(parts)

    def dir_key(self, path: str) -> str:
        """Key prefix of the directory `path` (with trailing slash, or the root prefix)."""
        key = self.key(path)
        return key + "/" if key != self.prefix else self.prefix

    @staticmethod
    def content_type(path: str) -> str:
        if path.endswith(".ipynb"):
            return "application/x-ipynb+json"
        return mimetypes.guess_type(path)[0] or "application/octet-stream"

    async def run(self, path: str, fn: Callable[..., T], *args: Any, exclusive: bool = False, **kwargs: Any) -> T:
        """Run blocking `fn` in the pool; translate S3/transport errors for `path`."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            translated = translate(exc, path=path, where=self.describe(), exclusive=exclusive)
            if translated is exc:
                raise
            raise translated from exc

    async def call(self, method: str, path: str, *, exclusive: bool = False, **kwargs: Any) -> Any:
        """Call client method `method` off the event loop."""
        return await self.run(path, getattr(self.client, method), exclusive=exclusive, **kwargs)

    def _list_keys_sync(self, prefix: str, delimiter: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Every object (and common prefix) under `prefix`, following ListObjectsV2 pages."""
        objects: list[dict[str, Any]] = []
        prefixes: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
            objects.extend(page.get("Contents", ()))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return objects, prefixes

    async def _list_keys(self, path: str, *, delimiter: str = "") -> tuple[list[dict[str, Any]], list[str]]:
        return await self.run(path, self._list_keys_sync, self.dir_key(path), delimiter)

    async def _head(self, path: str) -> dict[str, Any] | None:
        try:
            return await self.call("head_object", path, Bucket=self.bucket, Key=self.key(path))
        except FileNotFoundError:
            return None
        except PermissionError as refused:
            # A HEAD response has no body, so a 403 does not say why (bad key, bad
            # signature, policy).  A listing of the same place does; report that.
            try:
                await self._probe_dir(path)
            except PermissionError as detailed:
                raise detailed from refused
            raise

    async def _probe_dir(self, path: str) -> dict[str, Any] | None:
        """First entry directly in directory `path` (its marker sorts first), or None if it does not exist.

        With a delimiter, stores that keep emptied folders (SeaweedFS) report
        them as their own marker, so stat and the parent's listing agree.
        """
        response = await self.call(
            "list_objects_v2", path, Bucket=self.bucket, Prefix=self.dir_key(path), Delimiter="/", MaxKeys=1
        )
        contents = response.get("Contents") or []
        if contents:
            return contents[0]
        prefixes = response.get("CommonPrefixes") or []
        return {"Key": prefixes[0]["Prefix"]} if prefixes else None

    def _file_stat(self, path: str, size: int | None, mtime: datetime.datetime | None, etag: str | None) -> Stat:
        return Stat(path=path, kind="file", size=size, mtime=_utc(mtime), version=_etag(etag))

    def _dir_stat(self, path: str, first: dict[str, Any] | None = None) -> Stat:
        mtime = _utc(first.get("LastModified")) if first and first["Key"] == self.dir_key(path) else None
        return Stat(path=path, kind="directory", mtime=mtime)

    async def _require_dir(self, path: str) -> None:
        """Raise unless directory `path` exists (used for parents of new entries)."""
        if not path:
            return
        # One listing request in the common case; the HEAD only to explain a failure.
        if await self._probe_dir(path) is not None:
            return
        if await self._head(path) is not None:
            raise NotADirectoryError(20, f"Not a directory: {path}", path)
        raise FileNotFoundError(2, f"No such file or directory: {path}", path)

    async def _require_absent(self, path: str) -> None:
        try:
            await self.stat(path)
        except FileNotFoundError:
            return
        raise FileExistsError(17, f"File exists: {path}", path)

    # -- the primitives ------------------------------------------------------------------
    async def stat(self, path: str) -> Stat:
        self.key(path)
        if not path.strip("/"):
            return Stat(path="", kind="directory")
        path = path.strip("/")
        head = await self._head(path)
        if head is not None:
            return self._file_stat(path, head.get("ContentLength"), head.get("LastModified"), head.get("ETag"))
        first = await self._probe_dir(path)
        if first is None:
            raise FileNotFoundError(2, f"No such file or directory: {path}", path)
        return self._dir_stat(path, first)

    async def list(self, path: str) -> list[Stat]:
        path = path.strip("/")
        base = self.dir_key(path)
        objects, prefixes = await self._list_keys(path, delimiter="/")
        if not objects and not prefixes and path:
            if (await self.stat(path)).kind == "file":
                raise NotADirectoryError(20, f"Not a directory: {path}", path)
        entries: dict[str, Stat] = {}
        for prefix in prefixes:
            name = prefix[len(base) :].rstrip("/")
            if name and "/" not in name:
                entries[name] = Stat(path=posixpath.join(path, name), kind="directory")
        for obj in objects:
            name = obj["Key"][len(base) :]
            # Skip the directory's own marker and keys our paths cannot name ("a//b", "x/").
            if not name or "/" in name:
                continue
            entries[name] = self._file_stat(posixpath.join(path, name), obj.get("Size"), obj.get("LastModified"), obj.get("ETag"))
        return list(entries.values())

    async def read(self, path: str) -> bytes:
        path = path.strip("/")
        if not path:
            raise IsADirectoryError(21, "Is a directory: (root)", path)

        def fetch() -> bytes:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(path))
            with response["Body"] as body:
                return body.read()

        try:
            return await self.run(path, fetch)
        except FileNotFoundError:
            if await self._probe_dir(path) is not None:
                raise IsADirectoryError(21, f"Is a directory: {path}", path) from None
            raise

    async def read_stream(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        path = path.strip("/")
        if not path:
            raise IsADirectoryError(21, "Is a directory: (root)", path)
        try:
            response = await self.call("get_object", path, Bucket=self.bucket, Key=self.key(path))
        except FileNotFoundError:
            if await self._probe_dir(path) is not None:
                raise IsADirectoryError(21, f"Is a directory: {path}", path) from None
            raise
        body = response["Body"]
        try:
            sent = False
            while True:
                chunk = await self.run(path, body.read, chunk_size)
                if not chunk:
                    break
                sent = True
                yield chunk
            if not sent:
                yield b""
        finally:
            body.close()

    async def write(self, path: str, data: bytes, *, if_version: str | None = None, exclusive: bool = False) -> Stat:
        path = path.strip("/")
        await self._check_writable_target(path)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key(path), "Body": data, "ContentType": self.content_type(path)}
        if self.conditional_writes:
            if exclusive:
                kwargs["IfNoneMatch"] = "*"
            elif if_version is not None:
                kwargs["IfMatch"] = f'"{if_version}"'
        else:
            await self._check_version_emulated(path, if_version, exclusive)
        try:
            response = await self.call("put_object", path, exclusive=exclusive, **kwargs)
        except FileNotFoundError:
            if if_version is not None:
                # If-Match on a key that is gone: the version expected is not there.
                raise PreconditionFailed(17, f"The file was deleted in the store since it was read: {path}", path) from None
            raise
        head = None
        try:
            head = await self._head(path)
        except OSError:
            pass  # the PUT succeeded; report what we know rather than fail the save
        if head is not None:
            return self._file_stat(path, head.get("ContentLength"), head.get("LastModified"), head.get("ETag"))
        return self._file_stat(path, len(data), datetime.datetime.now(datetime.timezone.utc), response.get("ETag"))

    async def _check_writable_target(self, path: str) -> None:
        """The parent must be a directory and `path` itself must not be one."""
        if not path:
            raise IsADirectoryError(21, "Is a directory: (root)", path)
        parent_check = self._require_dir(posixpath.dirname(path))
        probe = self._probe_dir(path)
        _, first = await asyncio.gather(parent_check, probe)
        if first is not None:
            raise IsADirectoryError(21, f"Is a directory: {path}", path)

    async def _check_version_emulated(self, path: str, if_version: str | None, exclusive: bool) -> None:
        if not exclusive and if_version is None:
            return
        head = await self._head(path)
        if exclusive and head is not None:
            raise FileExistsError(17, f"File exists: {path}", path)
        if if_version is not None and (head is None or _etag(head.get("ETag")) != if_version):
            raise PreconditionFailed(17, f"The file changed in the store since it was read: {path}", path)

    async def mkdir(self, path: str) -> None:
        path = path.strip("/")
        if not path:
            raise FileExistsError(17, "File exists: (root)", path)
        await self._require_dir(posixpath.dirname(path))
        await self._require_absent(path)
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.dir_key(path), "Body": b"", "ContentType": _MARKER_TYPE}
        if self.conditional_writes:
            kwargs["IfNoneMatch"] = "*"
        await self.call("put_object", path, exclusive=True, **kwargs)

    async def delete(self, path: str) -> None:
        path = path.strip("/")
        if not path:
            raise PermissionError(13, "Refusing to delete the root directory", path)
        if await self._head(path) is not None:
            await self.call("delete_object", path, Bucket=self.bucket, Key=self.key(path))
        elif not await self._delete_tree(path):
            raise FileNotFoundError(2, f"No such file or directory: {path}", path)
        await self._keep_dir(posixpath.dirname(path))

    async def _delete_tree(self, path: str) -> bool:
        """Delete every object below directory `path`, and its marker; False if there was none.

        Files go first, then folder markers deepest first, one level per
        request: stores with real folders (SeaweedFS) silently keep a folder
        that is not yet empty when its marker is deleted.  Implied folders
        are deleted too, since such stores keep emptied folders as entries.
        """
        base = self.dir_key(path)
        found = False
        for _ in range(MAX_DELETE_ROUNDS):
            objects, _prefixes = await self._list_keys(path)
            if not objects and await self._probe_dir(path) is None:
                return found
            found = True
            files = [o["Key"] for o in objects if not o["Key"].endswith("/")]
            for start in range(0, len(files), DELETE_BATCH):
                await self._delete_keys(path, files[start : start + DELETE_BATCH])
            folders = {base}
            for obj in objects:
                parts = obj["Key"][len(base) :].split("/")[:-1]
                folders.update(base + "/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
            for depth in sorted({k.count("/") for k in folders}, reverse=True):
                level = sorted(k for k in folders if k.count("/") == depth)
                for start in range(0, len(level), DELETE_BATCH):
                    await self._delete_keys(path, level[start : start + DELETE_BATCH])
        raise OSError(5, f"Could not delete everything below {path}: objects keep appearing", path)

    async def _keep_dir(self, path: str) -> None:
        """Give directory `path` a marker if it has none and is now empty.

        On plain S3 a folder without a marker vanishes with its last object;
        on disk (and in Jupyter's model) deleting the last file keeps the folder.
        """
        if path and await self._probe_dir(path) is None:
            await self.call("put_object", path, Bucket=self.bucket, Key=self.dir_key(path), Body=b"", ContentType=_MARKER_TYPE)

    async def _delete_keys(self, path: str, keys: list[str]) -> None:
        response = await self.call(
            "delete_objects", path, Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
        )
        errors = [e for e in response.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
        if errors:
            first = errors[0]
            message = f"S3 could not delete {len(errors)} object(s) below {path}: {first.get('Code')}: {first.get('Message')}"
            if first.get("Code") == "AccessDenied":
                raise PermissionError(13, message, path)
            raise OSError(5, message, path)

    async def copy(self, src: str, dst: str) -> Stat:
        src, dst = src.strip("/"), dst.strip("/")
        source = await self.stat(src)
        if source.kind == "directory":
            raise IsADirectoryError(21, f"Is a directory: {src}", src)
        await self._require_dir(posixpath.dirname(dst))
        await self._require_absent(dst)
        await self._copy_key(dst, self.key(src), self.key(dst), source.size or 0)
        return await self.stat(dst)

    async def move(self, src: str, dst: str) -> None:
        src, dst = src.strip("/"), dst.strip("/")
        if not src or not dst:
            raise PermissionError(13, "The root directory cannot be moved or replaced", src or dst)
        if dst == src:
            raise FileExistsError(17, f"File exists: {dst}", dst)
        if dst.startswith(src + "/"):
            raise OSError(22, f"Cannot move a directory into itself: {src} -> {dst}", dst)
        source = await self.stat(src)
        await self._require_dir(posixpath.dirname(dst))
        await self._require_absent(dst)
        if source.kind == "file":
            await self._copy_key(dst, self.key(src), self.key(dst), source.size or 0)
            await self.call("delete_object", src, Bucket=self.bucket, Key=self.key(src))
        else:
            await self._move_tree(src, dst)
        await self._keep_dir(posixpath.dirname(src))

    async def _move_tree(self, src: str, dst: str) -> None:
        """Copy every object of directory `src` below `dst`; delete sources only once all copies exist."""
        objects, _ = await self._list_keys(src)
        src_base, dst_base = self.dir_key(src), self.dir_key(dst)
        # The destination marker keeps the moved folder a folder even if it was implicit.
        await self.call("put_object", dst, Bucket=self.bucket, Key=dst_base, Body=b"", ContentType=_MARKER_TYPE)

        async def copy_one(obj: dict[str, Any]) -> None:
            target = dst_base + obj["Key"][len(src_base) :]
            if target == dst_base:
                return
            if target.endswith("/"):
                # Folder markers are written afresh: stores with real folders cannot copy them.
                await self.call("put_object", dst, Bucket=self.bucket, Key=target, Body=b"", ContentType=_MARKER_TYPE)
            else:
                await self._copy_key(dst, obj["Key"], target, int(obj.get("Size") or 0))

        results = await asyncio.gather(*(copy_one(o) for o in objects), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Sources are untouched; remove the partial copy so a retry is not blocked by it.
            try:
                await self._delete_tree(dst)  # dst did not exist before: all of it is ours
            except OSError as cleanup_error:
                self.log.warning("Could not remove partial copy %s after a failed move: %s", dst, cleanup_error)
            raise failures[0]
        await self._delete_tree(src)

    async def _copy_key(self, path: str, src_key: str, dst_key: str, size: int) -> None:
        """Server-side copy of one object; part by part above the single-copy limit."""
        source = {"Bucket": self.bucket, "Key": src_key}
        if size <= self.multipart_copy_threshold:
            # REPLACE so the copy's Content-Type follows its new name (a.txt -> a.ipynb).
            await self.call(
                "copy_object", path, Bucket=self.bucket, Key=dst_key, CopySource=source,
                MetadataDirective="REPLACE", ContentType=self.content_type(dst_key),
            )
            return
        created = await self.call(
            "create_multipart_upload", path, Bucket=self.bucket, Key=dst_key, ContentType=self.content_type(dst_key)
        )
        upload_id = created["UploadId"]
        try:
            parts = []
            # S3 allows at most 10,000 parts per upload.
            part_size = max(self.part_size, -(-size // MAX_PARTS))
            for number, start in enumerate(range(0, size, part_size), start=1):
                end = min(start + part_size, size) - 1
                response = await self.call(
                    "upload_part_copy", path, Bucket=self.bucket, Key=dst_key, UploadId=upload_id, PartNumber=number,
                    CopySource=source, CopySourceRange=f"bytes={start}-{end}",
                )
                parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
            await self.call(
                "complete_multipart_upload", path, Bucket=self.bucket, Key=dst_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except BaseException:
            try:
                await self.call("abort_multipart_upload", path, Bucket=self.bucket, Key=dst_key, UploadId=upload_id)
            except OSError as exc:
                self.log.warning("Could not abort multipart copy to %s: %s", dst_key, exc)
            raise

    async def begin_upload(self, path: str) -> Upload:
        path = path.strip("/")
        await self._check_writable_target(path)
        return S3Upload(self, path, self.part_size)
