"""Google Drive v3 storage backend: `--contents gdrive://<folder-id>`.

A Drive folder is the root; files are Drive files and directories are Drive
folders.  The pieces:

- this module: the `Backend` primitives and their configuration (traitlets,
  `c.DriveBackend.*`, secrets from the environment);
- `gdrive_paths`: path → id resolution with a cache that stays correct under
  our own renames/moves/deletes (subtree dropped at once), stale ids (a 404
  drops the entry and the path is resolved again once) and changes made
  elsewhere (Drive's change feed, polled at most every
  `changes_poll_interval` seconds);
- `gdrive_api`: credentials, the thread pool with one API client per
  thread, retries and error translation;
- `gdrive_upload`: resumable upload sessions fed piece by piece.

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
  per thread; googleapiclient is imported only when a Drive backend is
  created, never when this module is merely imported.
- Credentials, in order: `credentials_refresher` (a callable or coroutine
  giving fresh access tokens, e.g. per-user tokens from JupyterHub), a
  `credentials_file` (service-account key or authorized-user JSON), or the
  OAuth fields (access token, and/or refresh token + client id/secret).  An
  expired token is refreshed before the request, and a 401 in the middle of
  an operation refreshes and replays that one request, so a save survives.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime
import errno
import io
import mimetypes
import os
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from traitlets import Any as AnyTrait
from traitlets import Bool, Float, Int, List, MetaHasTraits, TraitError, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from zasperhub.contents.base import Backend, PreconditionFailed, Stat, Upload
from zasperhub.contents.gdrive_paths import (
    ALL_DRIVES,
    FILE_FIELDS,
    FOLDER_MIME,
    LIST_ALL_DRIVES,
    Entry,
    PathIndex,
    parent_key,
    quote_q,
    split_path,
)

if TYPE_CHECKING:
    from zasperhub.contents.gdrive_api import DriveClient

GOOGLE_APPS_PREFIX = "application/vnd.google-apps."
_CHUNK_GRANULARITY = 256 * 1024


def _parse_time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _mimetype(name: str) -> str:
    if name.endswith(".ipynb"):
        return "application/x-ipynb+json"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


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
        "changes made elsewhere (0: before every operation; negative: never — then only stat and 404s "
        "notice external moves, and a read may follow a cached file that was moved away).").tag(config=True)

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
        self._paths = PathIndex(self._client, self.folder_id, self.changes_poll_interval)
        self._path_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._id_pool: list[str] = []

    def describe(self) -> str:
        return f"gdrive://{self.folder_id}"

    async def close(self) -> None:
        self._client.close()

    def _lock(self, path: str) -> asyncio.Lock:
        key = "/".join(split_path(path))
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
            path="/".join(split_path(path)),
            kind="directory" if folder else "file",
            size=None if folder or meta.get("size") is None else int(meta["size"]),
            mtime=_parse_time(meta.get("modifiedTime")),
            created=_parse_time(meta.get("createdTime")),
            writable=bool((meta.get("capabilities") or {}).get("canEdit", True)) and not native,
            version=None if folder else (meta.get("md5Checksum") or meta.get("headRevisionId") or meta.get("version")),
        )

    async def _get_meta(self, entry: Entry, path: str) -> dict[str, Any]:
        meta = await self._client.run(lambda s: s.files().get(fileId=entry.id, fields=FILE_FIELDS, **ALL_DRIVES).execute(), path)
        parts = split_path(path)
        # The id may have been renamed, moved or trashed elsewhere since we cached it.
        if parts and (meta.get("trashed") or meta.get("name") != parts[-1] or entry.parent not in (meta.get("parents") or [])):
            raise FileNotFoundError(errno.ENOENT, "moved or deleted in Google Drive", path)
        return meta

    async def stat(self, path: str) -> Stat:
        return await self._paths.with_entry(path, lambda e: self._stat_entry(e, path))

    async def _stat_entry(self, entry: Entry, path: str) -> Stat:
        return self._stat(path, await self._get_meta(entry, path))

    async def list(self, path: str) -> list[Stat]:
        return await self._paths.with_entry(path, lambda e: self._list_entry(e, path))

    async def _list_entry(self, entry: Entry, path: str) -> builtins.list[Stat]:
        if not entry.folder:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)
        q = f"{quote_q(entry.id)} in parents and trashed = false"
        files: builtins.list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = await self._client.run(lambda s, t=token: s.files().list(
                q=q, pageSize=1000, pageToken=t, fields=f"nextPageToken,files({FILE_FIELDS})", **LIST_ALL_DRIVES).execute(), path)
            files.extend(page.get("files", []))
            token = page.get("nextPageToken")
            if not token:
                break
        chosen: dict[str, dict[str, Any]] = {}
        for meta in sorted(files, key=lambda f: (f.get("createdTime", ""), f["id"]), reverse=True):
            name = meta.get("name", "")
            if name and "/" not in name and name not in (".", ".."):
                chosen[name] = meta  # the oldest wins, like in _lookup
        base = "/".join(split_path(path))
        stats = []
        for name, meta in chosen.items():
            child = f"{base}/{name}" if base else name
            self._paths.remember(child, meta, entry.id)
            stats.append(self._stat(child, meta))
        return stats

    # -- content ------------------------------------------------------------------
    async def read(self, path: str) -> bytes:
        return await self._paths.with_entry(path, lambda e: self._read_entry(e, path))

    async def _read_entry(self, entry: Entry, path: str) -> bytes:
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        return await self._client.run(lambda s: s.files().get_media(fileId=entry.id, **ALL_DRIVES).execute(), path)

    async def read_stream(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        from googleapiclient.http import MediaIoBaseDownload

        entry = await self._paths.resolve(path)
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        buf = io.BytesIO()
        # A transport of its own: the download outlives one worker-thread call.
        http = self._client.new_http()
        try:
            request = await self._client.run(lambda s: s.files().get_media(fileId=entry.id, **ALL_DRIVES), path)
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
            return await self._paths.retrying((parent_key(path),), lambda: self._write(path, data, if_version, exclusive))

    async def _write(self, path: str, data: bytes, if_version: str | None, exclusive: bool) -> Stat:
        parent, name = await self._paths.parent(path)
        existing = await self._paths.lookup(parent.id, name, path)
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
        self._paths.remember("/".join(split_path(path)), meta, parent.id)
        return self._stat(path, meta)

    async def _upload(self, path: str, parent_id: str, name: str, data: bytes, existing: dict[str, Any] | None) -> dict[str, Any]:
        from zasperhub.contents.gdrive_upload import BytesMedia

        resumable = len(data) > self.multipart_limit
        media = BytesMedia(io.BytesIO(data), mimetype=_mimetype(name), chunksize=self.chunk_size, resumable=resumable)
        new_id = None if existing is not None else await self._new_id()
        request: builtins.list[Any] = []

        def run(s: Any) -> dict[str, Any]:
            if existing is None and request:
                # A retry: the first attempt may have landed before the error.
                landed = self._probe_id(s, new_id)
                if landed is not None:
                    return landed
            if not request or not resumable:
                request[:] = [s.files().update(fileId=existing["id"], media_body=media, fields=FILE_FIELDS, **ALL_DRIVES)
                              if existing is not None else
                              s.files().create(body={"id": new_id, "name": name, "parents": [parent_id]},
                                               media_body=media, fields=FILE_FIELDS, **ALL_DRIVES)]
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
            return service.files().get(fileId=file_id, fields=FILE_FIELDS, **ALL_DRIVES).execute()
        except HttpError as e:
            if e.resp.status == 404:
                return None
            raise

    async def begin_upload(self, path: str) -> Upload:
        return await self._paths.retrying((parent_key(path),), lambda: self._begin_upload(path))

    async def _begin_upload(self, path: str) -> Upload:
        from zasperhub.contents.gdrive_upload import DriveUpload, GrowingMedia

        parent, name = await self._paths.parent(path)
        existing = await self._paths.lookup(parent.id, name, path)
        if existing is not None and existing.get("mimeType") == FOLDER_MIME:
            raise IsADirectoryError(errno.EISDIR, "is a directory", path)
        new_id = None if existing is not None else await self._new_id()
        key = "/".join(split_path(path))

        def make_request(s: Any, media: Any) -> Any:
            if existing is not None:
                return s.files().update(fileId=existing["id"], media_body=media, fields=FILE_FIELDS, **ALL_DRIVES)
            return s.files().create(body={"id": new_id, "name": name, "parents": [parent.id]},
                                    media_body=media, fields=FILE_FIELDS, **ALL_DRIVES)

        def on_done(meta: dict[str, Any]) -> Stat:
            self._paths.remember(key, meta, parent.id)
            return self._stat(key, meta)

        return DriveUpload(self._client, key, GrowingMedia(_mimetype(name), self.chunk_size), make_request, on_done)

    # -- namespace ------------------------------------------------------------------
    async def mkdir(self, path: str) -> None:
        if not split_path(path):
            raise FileExistsError(errno.EEXIST, "the root exists", path)
        async with self._lock(path):
            await self._paths.retrying((parent_key(path),), lambda: self._mkdir(path))

    async def _mkdir(self, path: str) -> None:
        parent, name = await self._paths.parent(path)
        if await self._paths.lookup(parent.id, name, path) is not None:
            raise FileExistsError(errno.EEXIST, "file exists", path)
        new_id = await self._new_id()
        meta = await self._client.run(self._once(new_id, lambda s: s.files().create(
            body={"id": new_id, "name": name, "parents": [parent.id], "mimeType": FOLDER_MIME},
            fields=FILE_FIELDS, **ALL_DRIVES).execute()), path)
        self._paths.remember("/".join(split_path(path)), meta, parent.id)

    async def delete(self, path: str) -> None:
        key = "/".join(split_path(path))
        if not key:
            raise PermissionError(errno.EACCES, "the root cannot be deleted", path)
        async with self._lock(path):
            await self._paths.with_entry(path, lambda e: self._delete_entry(e, path))
            self._paths.forget(key)

    async def _delete_entry(self, entry: Entry, path: str) -> None:
        if self.delete_to_trash:
            await self._client.run(lambda s: s.files().update(fileId=entry.id, body={"trashed": True}, fields="id", **ALL_DRIVES).execute(), path)
        else:
            await self._client.run(lambda s: s.files().delete(fileId=entry.id, **ALL_DRIVES).execute(), path)

    async def move(self, src: str, dst: str) -> None:
        src_key, dst_key = "/".join(split_path(src)), "/".join(split_path(dst))
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
            await self._paths.retrying((src_key, parent_key(dst_key)), lambda: self._move(src_key, dst_key))

    async def _move(self, src_key: str, dst_key: str) -> None:
        entry = await self._paths.resolve(src_key)
        parent, name = await self._paths.parent(dst_key)
        if await self._paths.lookup(parent.id, name, dst_key) is not None:
            raise FileExistsError(errno.EEXIST, "destination exists", dst_key)
        kwargs: dict[str, Any] = {}
        if parent.id != entry.parent:
            kwargs = {"addParents": parent.id, "removeParents": entry.parent}
        try:
            meta = await self._client.run(lambda s: s.files().update(
                fileId=entry.id, body={"name": name}, fields=FILE_FIELDS, **kwargs, **ALL_DRIVES).execute(), src_key)
        finally:
            self._paths.forget(src_key)
        self._paths.remember(dst_key, meta, parent.id)

    async def copy(self, src: str, dst: str) -> Stat:
        dst_key = "/".join(split_path(dst))
        src_key = "/".join(split_path(src))
        async with self._lock(dst_key):
            return await self._paths.retrying((src_key, parent_key(dst_key)), lambda: self._copy(src_key, dst_key))

    async def _copy(self, src_key: str, dst_key: str) -> Stat:
        entry = await self._paths.resolve(src_key)
        if entry.folder:
            raise IsADirectoryError(errno.EISDIR, "directories are copied entry by entry", src_key)
        parent, name = await self._paths.parent(dst_key)
        if await self._paths.lookup(parent.id, name, dst_key) is not None:
            raise FileExistsError(errno.EEXIST, "destination exists", dst_key)
        new_id = await self._new_id()
        meta = await self._client.run(self._once(new_id, lambda s: s.files().copy(
            fileId=entry.id, body={"id": new_id, "name": name, "parents": [parent.id]},
            fields=FILE_FIELDS, **ALL_DRIVES).execute()), dst_key)
        self._paths.remember(dst_key, meta, parent.id)
        return self._stat(dst_key, meta)
