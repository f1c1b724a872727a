"""Google Drive v3 storage backend: `--contents gdrive://<folder-id>`.

A Drive folder is the root; files are Drive files and directories are Drive
folders.  Drive addresses everything by id, so API paths are resolved one
name at a time (`'<parent>' in parents and name = '…'`) and remembered in a
path → id cache that stays correct:

- our own moves and deletes drop the affected subtree at once;
- a 404 for a cached id drops the entry and the path is resolved again once;
- changes made elsewhere (Drive web UI, another server) are picked up from
  Drive's change feed, polled at most every `changes_poll_interval` seconds
  before an operation; a changed name, parent or trash state drops the
  subtree of every cached path that pointed at that id.

Design decisions worth knowing:

- `delete` moves files to Drive's trash by default (`delete_to_trash`), so a
  mistaken delete can be undone from Drive; set it False to delete outright.
- Drive allows several files with the same name in a folder.  Lookups pick
  the oldest one; listings show one entry per name (the same one).  Names
  containing "/" cannot be addressed by path and are left out of listings.
- Drive has no conditional write.  `if_version`/`exclusive` are checked just
  before the write (read-check-write); another writer acting between the
  check and the write (milliseconds) is not detected.  Writers in this
  process are serialized per path, so the window only concerns other
  clients of the same folder.
- New files get ids from `files.generateIds` first, so a create that is
  retried after an ambiguous failure (a 5xx after Drive stored it) cannot
  produce a duplicate: the retry finds the id already taken and returns it.
- Writes up to `multipart_limit` bytes are one multipart request; larger ones
  and `begin_upload` use resumable sessions in `chunk_size` pieces.  Either
  way the file is replaced only when all bytes have arrived.
- Every googleapiclient call runs on a small thread pool with one API client
  per thread (see `gdrive_api`); googleapiclient is imported only when a
  Drive backend is created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import errno
import io
import mimetypes
import os
import time
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Float, Int, List, MetaHasTraits, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from zasperhub.contents.base import Backend, PreconditionFailed, Stat, Upload

if TYPE_CHECKING:
    from zasperhub.contents.gdrive_api import DriveClient

FOLDER_MIME = "application/vnd.google-apps.folder"
GOOGLE_APPS_PREFIX = "application/vnd.google-apps."
#: Metadata fields requested for every file (Drive returns only id/name/mimeType by default).
FILE_FIELDS = "id,name,mimeType,parents,trashed,size,md5Checksum,headRevisionId,version,modifiedTime,createdTime,capabilities/canEdit"
_ALL_DRIVES = {"supportsAllDrives": True}
_LIST_ALL_DRIVES = {"supportsAllDrives": True, "includeItemsFromAllDrives": True}
_CHUNK_GRANULARITY = 256 * 1024


def quote_q(value: str) -> str:
    """A string literal for Drive's `q` language (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _split(path: str) -> list[str]:
    parts = [p for p in path.strip("/").split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise PermissionError(errno.EACCES, "path leaves the storage root", path)
    return parts


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _mimetype(name: str) -> str:
    if name.endswith(".ipynb"):
        return "application/x-ipynb+json"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


@dataclasses.dataclass(frozen=True)
class _Entry:
    id: str
    folder: bool
    parent: str | None  # the parent id this path was resolved through


class _ConfigurableBackendMeta(MetaHasTraits, type(Backend)):  # type: ignore[misc]
    """Lets a backend be both an abc-checked `Backend` and a traitlets Configurable."""


class DriveBackend(Backend, LoggingConfigurable, metaclass=_ConfigurableBackendMeta):
    """Stores contents in a Google Drive folder (see the module docstring)."""

    scheme = "gdrive"

    folder_id = Unicode("", help="Id of the Drive folder used as the root ('root' = My Drive).").tag(config=True)
    credentials_file = Unicode(
        help="Service-account key or authorized-user JSON file. Default: $ZASPERHUB_GDRIVE_CREDENTIALS, "
        "then $GOOGLE_APPLICATION_CREDENTIALS.").tag(config=True)
    access_token = Unicode(help="OAuth access token. Default: $ZASPERHUB_GDRIVE_ACCESS_TOKEN.").tag(config=True)
    refresh_token = Unicode(help="OAuth refresh token. Default: $ZASPERHUB_GDRIVE_REFRESH_TOKEN.").tag(config=True)
    client_id = Unicode(help="OAuth client id for refreshing. Default: $ZASPERHUB_GDRIVE_CLIENT_ID.").tag(config=True)
    client_secret = Unicode(help="OAuth client secret for refreshing. Default: $ZASPERHUB_GDRIVE_CLIENT_SECRET.").tag(config=True)
    token_uri = Unicode(help="OAuth token endpoint. Default: $ZASPERHUB_GDRIVE_TOKEN_URI, else the credentials' own or Google's.").tag(config=True)
    scopes = List(Unicode(), default_value=["https://www.googleapis.com/auth/drive"], help="OAuth scopes requested.").tag(config=True)
    credentials_refresher = AnyTrait(
        None, allow_none=True,
        help="Callable returning a fresh access token (str, (token, expiry) or {'access_token', 'expires_in'|'expires_at'}), "
        "possibly as a coroutine; used instead of a refresh token (e.g. per-user tokens from JupyterHub).").tag(config=True)
    root_url = Unicode("", help="Drive API root URL; empty for Google's (tests point it at a local double).").tag(config=True)
    multipart_limit = Int(5 << 20, help="Writes up to this many bytes use one multipart request; larger ones a resumable session.").tag(config=True)
    chunk_size = Int(8 << 20, help="Resumable upload and download chunk size (a multiple of 256 KiB).").tag(config=True)
    max_workers = Int(4, help="Threads running Drive API calls.").tag(config=True)
    max_retries = Int(5, help="Retries of a call after 429/5xx/transport errors before reporting the store unavailable.").tag(config=True)
    retry_backoff = Float(0.5, help="First retry delay in seconds (doubles each retry, with jitter).").tag(config=True)
    request_timeout = Float(60.0, help="Socket timeout of one HTTP request, seconds.").tag(config=True)
    delete_to_trash = Bool(True, help="Delete moves entries to Drive's trash (recoverable) instead of deleting them.").tag(config=True)
    changes_poll_interval = Float(
        2.0, help="Seconds between checks of Drive's change feed to keep the path cache correct under "
        "changes made elsewhere (0: before every operation; negative: never).").tag(config=True)

    @default("credentials_file")
    def _default_credentials_file(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_CREDENTIALS") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")

    @default("access_token")
    def _default_access_token(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_ACCESS_TOKEN", "")

    @default("refresh_token")
    def _default_refresh_token(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_REFRESH_TOKEN", "")

    @default("client_id")
    def _default_client_id(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_CLIENT_ID", "")

    @default("client_secret")
    def _default_client_secret(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_CLIENT_SECRET", "")

    @default("token_uri")
    def _default_token_uri(self) -> str:
        return os.environ.get("ZASPERHUB_GDRIVE_TOKEN_URI", "")

    @validate("chunk_size")
    def _check_chunk_size(self, proposal: Any) -> int:
        if proposal["value"] <= 0 or proposal["value"] % _CHUNK_GRANULARITY:
            raise TraitError("DriveBackend.chunk_size must be a positive multiple of 256 KiB (262144)")
        return proposal["value"]

    @classmethod
    def from_url(cls, url: str, *, root_dir: str = "", parent: Any = None) -> "DriveBackend":
        """`gdrive://<folder-id>` → a backend configured from `parent`'s config and the environment."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != cls.scheme or not parts.netloc or parts.path.strip("/") or parts.query:
            raise ValueError(f"Google Drive contents URL must be gdrive://<folder-id>, not {url!r}")
        return cls(parent=parent, folder_id=parts.netloc)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.folder_id:
            raise ValueError("DriveBackend needs folder_id (the URL gdrive://<folder-id>)")
        # Imported here so that merely loading this module stays cheap.
        from zasperhub.contents import gdrive_api

        if self.credentials_refresher is not None:
            creds = gdrive_api.hook_credentials(self.credentials_refresher, lambda: self._client.loop,
                                                token=self.access_token or None, timeout=self.request_timeout)
        else:
            creds = gdrive_api.load_credentials(
                credentials_file=self.credentials_file, access_token=self.access_token, refresh_token=self.refresh_token,
                client_id=self.client_id, client_secret=self.client_secret, token_uri=self.token_uri, scopes=self.scopes)
        self._client: DriveClient = gdrive_api.DriveClient(
            creds, root_url=self.root_url or None, timeout=self.request_timeout, max_workers=self.max_workers,
            max_retries=self.max_retries, backoff=self.retry_backoff)
        self._cache: dict[str, _Entry] = {}
        self._root_ready = False
        self._start_lock: asyncio.Lock | None = None
        self._changes_token: str | None = None
        self._changes_checked = 0.0
        self._changes_lock: asyncio.Lock | None = None
        self._path_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._id_pool: list[str] = []

    def describe(self) -> str:
        return f"gdrive://{self.folder_id}"

    async def close(self) -> None:
        self._client.close()

    # -- path cache -------------------------------------------------------------
    async def _ensure_root(self) -> None:
        if self._root_ready:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._root_ready:
                return
            meta = await self._client.run(lambda s: s.files().get(fileId=self.folder_id, fields=FILE_FIELDS, **_ALL_DRIVES).execute(), "")
            if meta.get("mimeType") != FOLDER_MIME or meta.get("trashed"):
                raise NotADirectoryError(errno.ENOTDIR, f"Drive id {self.folder_id!r} is not a usable folder", "")
            self._cache[""] = _Entry(meta["id"], True, None)
            if self.changes_poll_interval >= 0:
                token = await self._client.run(lambda s: s.changes().getStartPageToken(**_ALL_DRIVES).execute(), "")
                self._changes_token = token["startPageToken"]
                self._changes_checked = time.monotonic()
            self._root_ready = True

    def _forget(self, path: str) -> None:
        """Drop `path` and everything cached below it."""
        prefix = path + "/"
        for key in [k for k in self._cache if k == path or (path == "" and k) or k.startswith(prefix)]:
            if key:
                del self._cache[key]

    def _forget_ids(self, changed: dict[str, dict[str, Any] | None]) -> None:
        """Drop cached paths whose id changed name, parent or trash state (or vanished)."""
        stale = []
        for path, entry in self._cache.items():
            if not path or entry.id not in changed:
                continue
            meta = changed[entry.id]
            if (meta is None or meta.get("trashed") or meta.get("name") != path.rsplit("/", 1)[-1]
                    or entry.parent not in (meta.get("parents") or [])):
                stale.append(path)
        for path in stale:
            self._forget(path)

    async def _sync_changes(self) -> None:
        if self.changes_poll_interval < 0 or self._changes_token is None:
            return
        if time.monotonic() - self._changes_checked < self.changes_poll_interval:
            return
        if self._changes_lock is None:
            self._changes_lock = asyncio.Lock()
        async with self._changes_lock:
            if time.monotonic() - self._changes_checked < self.changes_poll_interval:
                return
            started = time.monotonic()
            changed: dict[str, dict[str, Any] | None] = {}
            token = self._changes_token
            for _ in range(100):  # bounded: a huge backlog just resets the cache below
                page = await self._client.run(lambda s, t=token: s.changes().list(
                    pageToken=t, pageSize=1000, spaces="drive", includeRemoved=True,
                    fields="nextPageToken,newStartPageToken,changes(fileId,removed,file(name,parents,trashed))",
                    **_LIST_ALL_DRIVES).execute(), "")
                for ch in page.get("changes", []):
                    changed[ch["fileId"]] = None if ch.get("removed") else ch.get("file")
                if page.get("newStartPageToken"):
                    self._changes_token = page["newStartPageToken"]
                    self._forget_ids(changed)
                    break
                token = page["nextPageToken"]
            else:
                self._forget("")
                self._changes_token = (await self._client.run(lambda s: s.changes().getStartPageToken(**_ALL_DRIVES).execute(), ""))["startPageToken"]
            self._changes_checked = started

    async def _lookup(self, parent_id: str, name: str, path: str) -> dict[str, Any] | None:
        """The child `name` of folder `parent_id` (oldest if Drive holds duplicates), fresh from Drive."""
        q = f"{quote_q(parent_id)} in parents and name = {quote_q(name)} and trashed = false"
        result = await self._client.run(lambda s: s.files().list(
            q=q, pageSize=100, fields=f"files({FILE_FIELDS})", **_LIST_ALL_DRIVES).execute(), path)
        found = [f for f in result.get("files", []) if f.get("name") == name]
        if not found:
            return None
        return min(found, key=lambda f: (f.get("createdTime", ""), f["id"]))

    def _remember(self, path: str, meta: dict[str, Any], parent: str) -> _Entry:
        entry = _Entry(meta["id"], meta.get("mimeType") == FOLDER_MIME, parent)
        self._cache[path] = entry
        return entry

    async def _resolve(self, path: str) -> _Entry:
        """The entry at `path`: cached prefixes first, then one lookup per missing name."""
        await self._ensure_root()
        await self._sync_changes()
        parts = _split(path)
        known = len(parts)
        while known and "/".join(parts[:known]) not in self._cache:
            known -= 1
        entry = self._cache["/".join(parts[:known])]
        for i in range(known, len(parts)):
            sub = "/".join(parts[: i + 1])
            if not entry.folder:
                raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", path)
            meta = await self._lookup(entry.id, parts[i], sub)
            if meta is None:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            entry = self._remember(sub, meta, entry.id)
        return entry

    async def _retrying(self, keys: tuple[str, ...], fn: Callable[[], Awaitable[Any]]) -> Any:
        """`fn()`; if it fails with FileNotFoundError while one of `keys` came
        from the cache, the cached ids may be stale (changed elsewhere, not yet
        seen in the change feed): forget them and run `fn` once more."""
        cached = [k for k in keys if k in self._cache]
        try:
            return await fn()
        except FileNotFoundError:
            if not cached:
                raise
            for key in cached:
                self._forget(key)
            return await fn()

    async def _with_entry(self, path: str, op: Callable[[_Entry], Awaitable[Any]]) -> Any:
        """`op(entry at path)`, resolved again once if a cached id turns out stale."""

        async def run() -> Any:
            return await op(await self._resolve(path))

        return await self._retrying(("/".join(_split(path)),), run)

    async def _parent(self, path: str) -> tuple[_Entry, str]:
        """(entry of the parent folder, leaf name) for a path that is not the root."""
        parts = _split(path)
        if not parts:
            raise PermissionError(errno.EACCES, "the root itself cannot be replaced", path)
        parent = await self._resolve("/".join(parts[:-1]))
        if not parent.folder:
            raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", path)
        return parent, parts[-1]

    @staticmethod
    def _parent_key(path: str) -> str:
        return "/".join(_split(path)[:-1])

    def _lock(self, path: str) -> asyncio.Lock:
        key = "/".join(_split(path))
        lock = self._path_locks.get(key)
        if lock is None:
            lock = self._path_locks[key] = asyncio.Lock()
        return lock

    async def _new_id(self) -> str:
        if not self._id_pool:
            got = await self._client.run(lambda s: s.files().generateIds(count=32, space="drive").execute(), "")
            self._id_pool.extend(got["ids"])
        return self._id_pool.pop()

    # -- metadata -----------------------------------------------------------------
    def _stat(self, path: str, meta: dict[str, Any]) -> Stat:
        folder = meta.get("mimeType") == FOLDER_MIME
        native = not folder and str(meta.get("mimeType", "")).startswith(GOOGLE_APPS_PREFIX)
        return Stat(
            path="/".join(_split(path)),
            kind="directory" if folder else "file",
            size=None if folder or meta.get("size") is None else int(meta["size"]),
            mtime=_parse_time(meta.get("modifiedTime")),
            created=_parse_time(meta.get("createdTime")),
            writable=bool((meta.get("capabilities") or {}).get("canEdit", True)) and not native,
            version=None if folder else (meta.get("md5Checksum") or meta.get("headRevisionId") or meta.get("version")),
        )

    async def _get_meta(self, entry: _Entry, path: str) -> dict[str, Any]:
        meta = await self._client.run(lambda s: s.files().get(fileId=entry.id, fields=FILE_FIELDS, **_ALL_DRIVES).execute(), path)
        parts = _split(path)
        # The id may have been renamed, moved or trashed elsewhere since we cached it.
        if parts and (meta.get("trashed") or meta.get("name") != parts[-1] or entry.parent not in (meta.get("parents") or [])):
            raise FileNotFoundError(errno.ENOENT, "moved or deleted in Google Drive", path)
        return meta

    async def stat(self, path: str) -> Stat:
        return await self._with_entry(path, lambda e: self._stat_entry(e, path))

    async def _stat_entry(self, entry: _Entry, path: str) -> Stat:
        return self._stat(path, await self._get_meta(entry, path))

    async def list(self, path: str) -> list[Stat]:
        return await self._with_entry(path, lambda e: self._list_entry(e, path))

    async def _list_entry(self, entry: _Entry, path: str) -> list[Stat]:
        if not entry.folder:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        q = f"{quote_q(entry.id)} in parents and trashed = false"
        files: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._client.run(lambda s, t=token: s.files().list(
                q=q, pageSize=1000, pageToken=t, fields=f"nextPageToken,files({FILE_FIELDS})", **_LIST_ALL_DRIVES).execute(), path)
            files.extend(page.get("files", []))
            token = page.get("nextPageToken")
            if not token:
                break
        chosen: dict[str, dict[str, Any]] = {}
        for meta in sorted(files, key=lambda f: (f.get("createdTime", ""), f["id"]), reverse=True):
            name = meta.get("name", "")
            if name and "/" not in name and name not in (".", ".."):
                chosen[name] = meta  # the oldest wins, like in _lookup
        base = "/".join(_split(path))
        stats = []
        for name, meta in chosen.items():
            child = f"{base}/{name}" if base else name
            self._remember(child, meta, entry.id)
            stats.append(self._stat(child, meta))
        return stats

    # -- content ------------------------------------------------------------------
    async def read(self, path: str) -> bytes:
        return await self._with_entry(path, lambda e: self._read_entry(e, path))

    async def _read_entry(self, entry: _Entry, path: str) -> bytes:
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return await self._client.run(lambda s: s.files().get_media(fileId=entry.id, **_ALL_DRIVES).execute(), path)

    async def read_stream(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        from googleapiclient.http import MediaIoBaseDownload

        entry = await self._resolve(path)
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        buf = io.BytesIO()
        # A transport of its own: the download outlives one worker-thread call.
        http = self._client.new_http()
        try:
            request = await self._client.run(lambda s: s.files().get_media(fileId=entry.id, **_ALL_DRIVES), path)
            request.http = http
            downloader = MediaIoBaseDownload(buf, request, chunksize=max(chunk_size, _CHUNK_GRANULARITY))
            done, sent = False, False
            while not done:
                _, done = await self._client.run(lambda s: downloader.next_chunk(), path)
                data = buf.getvalue()
                buf.seek(0)
                buf.truncate()
                if data or (done and not sent):
                    sent = True
                    yield data
        finally:
            http.http.close()

    async def write(self, path: str, data: bytes, *, if_version: str | None = None, exclusive: bool = False) -> Stat:
        async with self._lock(path):
            return await self._retrying((self._parent_key(path),), lambda: self._write(path, data, if_version, exclusive))

    async def _write(self, path: str, data: bytes, if_version: str | None, exclusive: bool) -> Stat:
        parent, name = await self._parent(path)
        existing = await self._lookup(parent.id, name, path)
        if existing is not None:
            if existing.get("mimeType") == FOLDER_MIME:
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            if exclusive:
                raise FileExistsError(errno.EEXIST, "file exists", path)
            current = self._stat(path, existing).version
            if if_version is not None and current != if_version:
                raise PreconditionFailed(errno.EEXIST, f"file changed (version {current}, expected {if_version})", path)
        elif if_version is not None:
            raise PreconditionFailed(errno.ENOENT, "file no longer exists", path)
        meta = await self._upload(path, parent.id, name, data, existing)
        self._remember("/".join(_split(path)), meta, parent.id)
        return self._stat(path, meta)

    async def _upload(self, path: str, parent_id: str, name: str, data: bytes, existing: dict[str, Any] | None) -> dict[str, Any]:
        from googleapiclient.http import MediaIoBaseUpload

        resumable = len(data) > self.multipart_limit
        media = MediaIoBaseUpload(io.BytesIO(data), mimetype=_mimetype(name), chunksize=self.chunk_size, resumable=resumable)
        new_id = None if existing is not None else await self._new_id()
        request: list[Any] = []

        def run(s: Any) -> dict[str, Any]:
            if existing is None and request:
                # A retry: the first attempt may have landed before the error.
                landed = self._probe_id(s, new_id)
                if landed is not None:
                    return landed
            if not request or not resumable:
                request[:] = [s.files().update(fileId=existing["id"], media_body=media, fields=FILE_FIELDS, **_ALL_DRIVES)
                              if existing is not None else
                              s.files().create(body={"id": new_id, "name": name, "parents": [parent_id]},
                                               media_body=media, fields=FILE_FIELDS, **_ALL_DRIVES)]
            if not resumable:
                return request[0].execute()
            body = None
            while body is None:
                _, body = request[0].next_chunk()
            return body

        return await self._client.run(run, path)

    def _once(self, new_id: str, create: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
        """Wrap a create with a pre-generated id so that a retried call never makes a duplicate."""
        attempts = [0]

        def run(s: Any) -> dict[str, Any]:
            attempts[0] += 1
            if attempts[0] > 1:
                landed = self._probe_id(s, new_id)
                if landed is not None:
                    return landed
            return create(s)

        return run

    @staticmethod
    def _probe_id(service: Any, file_id: str | None) -> dict[str, Any] | None:
        from googleapiclient.errors import HttpError

        try:
            return service.files().get(fileId=file_id, fields=FILE_FIELDS, **_ALL_DRIVES).execute()
        except HttpError as e:
            if e.resp.status == 404:
                return None
            raise

    async def begin_upload(self, path: str) -> Upload:
        return await self._retrying((self._parent_key(path),), lambda: self._begin_upload(path))

    async def _begin_upload(self, path: str) -> Upload:
        from zasperhub.contents.gdrive_upload import DriveUpload, GrowingMedia

        parent, name = await self._parent(path)
        existing = await self._lookup(parent.id, name, path)
        if existing is not None and existing.get("mimeType") == FOLDER_MIME:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        new_id = None if existing is not None else await self._new_id()
        key = "/".join(_split(path))

        def make_request(s: Any, media: Any) -> Any:
            if existing is not None:
                return s.files().update(fileId=existing["id"], media_body=media, fields=FILE_FIELDS, **_ALL_DRIVES)
            return s.files().create(body={"id": new_id, "name": name, "parents": [parent.id]},
                                    media_body=media, fields=FILE_FIELDS, **_ALL_DRIVES)

        def on_done(meta: dict[str, Any]) -> Stat:
            self._remember(key, meta, parent.id)
            return self._stat(key, meta)

        return DriveUpload(self._client, key, GrowingMedia(_mimetype(name), self.chunk_size), make_request, on_done)

    # -- namespace ------------------------------------------------------------------
    async def mkdir(self, path: str) -> None:
        if not _split(path):
            raise FileExistsError(errno.EEXIST, "the root exists", path)
        async with self._lock(path):
            await self._retrying((self._parent_key(path),), lambda: self._mkdir(path))

    async def _mkdir(self, path: str) -> None:
        parent, name = await self._parent(path)
        if await self._lookup(parent.id, name, path) is not None:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        new_id = await self._new_id()
        meta = await self._client.run(self._once(new_id, lambda s: s.files().create(
            body={"id": new_id, "name": name, "parents": [parent.id], "mimeType": FOLDER_MIME},
            fields=FILE_FIELDS, **_ALL_DRIVES).execute()), path)
        self._remember("/".join(_split(path)), meta, parent.id)

    async def delete(self, path: str) -> None:
        key = "/".join(_split(path))
        if not key:
            raise PermissionError(errno.EACCES, "the root cannot be deleted", path)
        async with self._lock(path):
            await self._with_entry(path, lambda e: self._delete_entry(e, path))
            self._forget(key)

    async def _delete_entry(self, entry: _Entry, path: str) -> None:
        if self.delete_to_trash:
            await self._client.run(lambda s: s.files().update(fileId=entry.id, body={"trashed": True}, fields="id", **_ALL_DRIVES).execute(), path)
        else:
            await self._client.run(lambda s: s.files().delete(fileId=entry.id, **_ALL_DRIVES).execute(), path)

    async def move(self, src: str, dst: str) -> None:
        src_key, dst_key = "/".join(_split(src)), "/".join(_split(dst))
        if not src_key or not dst_key:
            raise PermissionError(errno.EACCES, "the root cannot be moved or replaced", src if not src_key else dst)
        if src_key == dst_key:
            await self.stat(src_key)
            return
        if dst_key.startswith(src_key + "/"):
            raise OSError(errno.EINVAL, "cannot move a directory into itself", dst)
        async with AsyncExitStack() as stack:
            for key in sorted((src_key, dst_key)):
                await stack.enter_async_context(self._lock(key))
            await self._retrying((src_key, self._parent_key(dst_key)), lambda: self._move(src_key, dst_key))

    async def _move(self, src_key: str, dst_key: str) -> None:
        entry = await self._resolve(src_key)
        parent, name = await self._parent(dst_key)
        if await self._lookup(parent.id, name, dst_key) is not None:
            raise FileExistsError(errno.EEXIST, "destination exists", dst_key)
        kwargs: dict[str, Any] = {}
        if parent.id != entry.parent:
            kwargs = {"addParents": parent.id, "removeParents": entry.parent}
        try:
            meta = await self._client.run(lambda s: s.files().update(
                fileId=entry.id, body={"name": name}, fields=FILE_FIELDS, **kwargs, **_ALL_DRIVES).execute(), src_key)
        finally:
            self._forget(src_key)
        self._remember(dst_key, meta, parent.id)

    async def copy(self, src: str, dst: str) -> Stat:
        dst_key = "/".join(_split(dst))
        src_key = "/".join(_split(src))
        async with self._lock(dst_key):
            return await self._retrying((src_key, self._parent_key(dst_key)), lambda: self._copy(src_key, dst_key))

    async def _copy(self, src_key: str, dst_key: str) -> Stat:
        entry = await self._resolve(src_key)
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "directories are copied entry by entry", src_key)
        parent, name = await self._parent(dst_key)
        if await self._lookup(parent.id, name, dst_key) is not None:
            raise FileExistsError(errno.EEXIST, "destination exists", dst_key)
        new_id = await self._new_id()
        meta = await self._client.run(self._once(new_id, lambda s: s.files().copy(
            fileId=entry.id, body={"id": new_id, "name": name, "parents": [parent.id]},
            fields=FILE_FIELDS, **_ALL_DRIVES).execute()), dst_key)
        self._remember(dst_key, meta, parent.id)
        return self._stat(dst_key, meta)
