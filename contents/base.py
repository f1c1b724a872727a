"""The storage backend contract: a handful of async primitives.

A backend stores bytes at "/"-separated API paths relative to its root
("" is the root; no leading slash; never "..").  Everything Jupyter-specific
— notebooks vs files, formats, untitled names, copy, hashes, conflict
detection, chunked uploads, checkpoints — lives once in
`zasperhub.contents.manager` on top of these primitives.

Errors are the built-in `OSError` family, raised with the API path as
`filename`:

- `FileNotFoundError`   path (or a parent) does not exist
- `FileExistsError`     target of mkdir/move/create-exclusive exists
- `NotADirectoryError`  listing a file, or a parent that is a file
- `IsADirectoryError`   reading a directory as a file
- `PermissionError`     the store refuses (credentials, read-only)
- `StorageUnavailable`  the store cannot be reached or failed (→ HTTP 503)

Backends must never expose anything outside their root, and all blocking
I/O must run off the event loop (e.g. `asyncio.to_thread`).

Plugging in a backend: register the class in the entry-point group
`zasperhub.contents` under its URL scheme (`s3 = "pkg.mod:S3Backend"`), and
give it a constructor from a URL::

    @classmethod
    def from_url(cls, url: str, *, root_dir: str, parent) -> Backend

`url` is what the user passed to `--contents` (e.g. `s3://bucket/prefix`),
`root_dir` the server's root directory, `parent` the traitlets application
(so a backend may be a `Configurable` with `parent=parent` and read
`--S3Backend.endpoint_url=…`-style settings).  Raise `ValueError` for a bad
URL.  `zasperhub.contents.registry` imports the class only when its scheme is
used, and names the extra to install if the import fails.  The conformance
suite in `tests/contents/` must pass against every backend.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime
from collections.abc import AsyncIterator
from typing import ClassVar


class StorageUnavailable(ConnectionError):
    """The store is unreachable or failed mid-operation; nothing was changed.

    Maps to HTTP 503 with this message as the reason shown to the user.
    """


class PreconditionFailed(FileExistsError):
    """A conditional write found a different version than expected (→ 409)."""


@dataclasses.dataclass(frozen=True)
class Stat:
    """What the store knows about one entry, without its content."""

    path: str
    kind: str  # "file" | "directory"
    size: int | None = None
    mtime: datetime.datetime | None = None  # tz-aware UTC
    created: datetime.datetime | None = None  # tz-aware UTC
    writable: bool = True
    #: Opaque version of the stored bytes (S3 ETag, Drive md5/version,
    #: local mtime_ns+size); used for conditional writes.  None if unknown.
    version: str | None = None

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


class Upload(abc.ABC):
    """An upload in progress, fed in pieces and made visible all at once.

    Used for chunked uploads (the contents API's `chunk` 1…-1) and large
    files: local disk appends to a temp file, S3 streams a multipart upload,
    Drive uses a resumable session.  Nothing is visible at `path` until
    `commit` succeeds; `abort` discards everything.
    """

    path: str

    @abc.abstractmethod
    async def append(self, data: bytes) -> None:
        """Add the next piece (pieces arrive in order)."""

    @abc.abstractmethod
    async def commit(self) -> Stat:
        """Make the uploaded bytes visible at `path`, replacing any old file atomically."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Discard what was uploaded; safe to call more than once."""


class Backend(abc.ABC):
    """The primitives every store implements.

    `write` is all-or-nothing: after a failure the previous content (or
    absence) of the file is intact.  `move` of a directory moves everything
    below it; if a backend has to copy-then-delete, a failure may leave the
    source in place but never loses data.
    """

    #: URL scheme(s) this backend is chosen by, e.g. "s3".
    scheme: ClassVar[str] = ""

    @abc.abstractmethod
    async def stat(self, path: str) -> Stat:
        """Metadata of the entry at `path` (the root "" is a directory)."""

    @abc.abstractmethod
    async def list(self, path: str) -> list[Stat]:
        """Entries directly inside the directory `path`, in no particular order."""

    @abc.abstractmethod
    async def read(self, path: str) -> bytes:
        """The whole content of the file at `path`."""

    @abc.abstractmethod
    async def write(self, path: str, data: bytes, *, if_version: str | None = None, exclusive: bool = False) -> Stat:
        """Store `data` at `path` atomically; the parent directory must exist.

        `if_version`: only replace the file if its current version is this
        one (else `PreconditionFailed`).  `exclusive`: fail with
        `FileExistsError` if anything exists at `path`.
        """

    @abc.abstractmethod
    async def delete(self, path: str) -> None:
        """Remove a file, or a directory and everything below it."""

    @abc.abstractmethod
    async def move(self, src: str, dst: str) -> None:
        """Rename/move a file or directory; `FileExistsError` if `dst` exists."""

    @abc.abstractmethod
    async def mkdir(self, path: str) -> None:
        """Create directory `path` (parent must exist; `FileExistsError` if it exists)."""

    # -- with defaults; override where the store can do better ------------------
    async def read_stream(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The file's content in pieces, for downloads that must not load it whole."""
        data = await self.read(path)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]
        if not data:
            yield b""

    async def copy(self, src: str, dst: str) -> Stat:
        """Copy a file to `dst` (must not exist); stores with server-side copy override."""
        data = await self.read(src)
        return await self.write(dst, data, exclusive=True)

    async def begin_upload(self, path: str) -> Upload:
        """Start an upload to `path`; the default buffers in memory (override for big files)."""
        return _BufferedUpload(self, path)

    def local_dir(self, path: str) -> str | None:
        """The local filesystem directory for API directory `path` (kernels' cwd), or None."""
        return None

    def describe(self) -> str:
        """Where the files live, for logs and the UI (never includes secrets)."""
        return self.scheme or type(self).__name__

    async def close(self) -> None:
        """Release clients, pools and threads."""


class _BufferedUpload(Upload):
    """Collects pieces in memory and writes once on commit (default fallback)."""

    def __init__(self, backend: Backend, path: str) -> None:
        self.backend = backend
        self.path = path
        self._parts: list[bytes] = []

    async def append(self, data: bytes) -> None:
        self._parts.append(data)

    async def commit(self) -> Stat:
        data = b"".join(self._parts)
        self._parts = []
        return await self.backend.write(self.path, data)

    async def abort(self) -> None:
        self._parts = []
