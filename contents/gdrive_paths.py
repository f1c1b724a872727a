"""Drive's path → id resolution for `DriveBackend`, with a cache that stays correct.

Drive addresses files by id; API paths are resolved one name at a time
(`'<parent>' in parents and name = '…'`) and remembered here.  The cache is
kept honest three ways: the backend drops subtrees after its own moves and
deletes; `retrying` drops entries whose cached id turned out stale (a 404, or
metadata that no longer matches) and resolves once more; and Drive's change
feed, polled at most every `poll_interval` seconds, drops every cached path
whose id changed name, parent or trash state elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zasperhub.contents.gdrive_api import DriveClient

FOLDER_MIME = "application/vnd.google-apps.folder"
#: Metadata fields requested for every file (Drive returns only id/name/mimeType by default).
FILE_FIELDS = "id,name,mimeType,parents,trashed,size,md5Checksum,headRevisionId,version,modifiedTime,createdTime,capabilities/canEdit"
ALL_DRIVES = {"supportsAllDrives": True}
LIST_ALL_DRIVES = {"supportsAllDrives": True, "includeItemsFromAllDrives": True}


def quote_q(value: str) -> str:
    """A string literal for Drive's `q` language (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_path(path: str) -> list[str]:
    parts = [p for p in path.strip("/").split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise PermissionError(errno.EACCES, "path leaves the storage root", path)
    return parts


def parent_key(path: str) -> str:
    """The normalized path of `path`'s parent directory."""
    return "/".join(split_path(path)[:-1])


@dataclasses.dataclass(frozen=True)
class Entry:
    """A cached resolution: the id at a path and the parent id it was found under."""

    id: str
    folder: bool
    parent: str | None  # the parent id this path was resolved through


class PathIndex:
    """Resolves API paths to Drive ids for one backend (all methods run on the event loop)."""

    def __init__(self, client: "DriveClient", folder_id: str, poll_interval: float) -> None:
        self.client = client
        self.folder_id = folder_id
        self.poll_interval = poll_interval
        self.entries: dict[str, Entry] = {}
        self._root_ready = False
        self._start_lock: asyncio.Lock | None = None
        self._changes_token: str | None = None
        self._changes_checked = 0.0
        self._changes_lock: asyncio.Lock | None = None

    async def ensure_root(self) -> None:
        """Check once that the root id is a folder, and start following the change feed."""
        if self._root_ready:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._root_ready:
                return
            meta = await self.client.run(lambda s: s.files().get(fileId=self.folder_id, fields=FILE_FIELDS, **ALL_DRIVES).execute(), "")
            if meta.get("mimeType") != FOLDER_MIME or meta.get("trashed"):
                raise NotADirectoryError(errno.ENOTDIR, f"Drive id {self.folder_id!r} is not a usable folder", "")
            self.entries[""] = Entry(meta["id"], True, None)
            if self.poll_interval >= 0:
                token = await self.client.run(lambda s: s.changes().getStartPageToken(**ALL_DRIVES).execute(), "")
                self._changes_token = token["startPageToken"]
                self._changes_checked = time.monotonic()
            self._root_ready = True

    def forget(self, path: str) -> None:
        """Drop `path` and everything cached below it."""
        prefix = path + "/"
        for key in [k for k in self.entries if k == path or (path == "" and k) or k.startswith(prefix)]:
            if key:
                del self.entries[key]

    def forget_ids(self, changed: dict[str, dict[str, Any] | None]) -> None:
        """Drop cached paths whose id changed name, parent or trash state (or vanished)."""
        stale = []
        for path, entry in self.entries.items():
            if not path or entry.id not in changed:
                continue
            meta = changed[entry.id]
            if (meta is None or meta.get("trashed") or meta.get("name") != path.rsplit("/", 1)[-1]
                    or entry.parent not in (meta.get("parents") or [])):
                stale.append(path)
        for path in stale:
            self.forget(path)

    async def sync_changes(self) -> None:
        """Apply Drive's change feed to the cache, at most every `poll_interval` seconds."""
        if self.poll_interval < 0 or self._changes_token is None:
            return
        if time.monotonic() - self._changes_checked < self.poll_interval:
            return
        if self._changes_lock is None:
            self._changes_lock = asyncio.Lock()
        async with self._changes_lock:
            if time.monotonic() - self._changes_checked < self.poll_interval:
                return
            started = time.monotonic()
            changed: dict[str, dict[str, Any] | None] = {}
            token = self._changes_token
            for _ in range(100):  # bounded: a huge backlog just resets the cache below
                page = await self.client.run(lambda s, t=token: s.changes().list(
                    pageToken=t, pageSize=1000, spaces="drive", includeRemoved=True,
                    fields="nextPageToken,newStartPageToken,changes(fileId,removed,file(name,parents,trashed))",
                    **LIST_ALL_DRIVES).execute(), "")
                for ch in page.get("changes", []):
                    changed[ch["fileId"]] = None if ch.get("removed") else ch.get("file")
                if page.get("newStartPageToken"):
                    self._changes_token = page["newStartPageToken"]
                    self.forget_ids(changed)
                    break
                token = page["nextPageToken"]
            else:
                self.forget("")
                self._changes_token = (await self.client.run(lambda s: s.changes().getStartPageToken(**ALL_DRIVES).execute(), ""))["startPageToken"]
            self._changes_checked = started

    async def lookup(self, parent_id: str, name: str, path: str) -> dict[str, Any] | None:
        """The child `name` of folder `parent_id` (oldest if Drive holds duplicates), fresh from Drive."""
        q = f"{quote_q(parent_id)} in parents and name = {quote_q(name)} and trashed = false"
        result = await self.client.run(lambda s: s.files().list(
            q=q, pageSize=100, fields=f"files({FILE_FIELDS})", **LIST_ALL_DRIVES).execute(), path)
        found = [f for f in result.get("files", []) if f.get("name") == name]
        if not found:
            return None
        return min(found, key=lambda f: (f.get("createdTime", ""), f["id"]))

    def remember(self, path: str, meta: dict[str, Any], parent: str) -> Entry:
        """Cache what a lookup, listing or write just told us about `path`."""
        entry = Entry(meta["id"], meta.get("mimeType") == FOLDER_MIME, parent)
        self.entries[path] = entry
        return entry

    async def resolve(self, path: str) -> Entry:
        """The entry at `path`: cached prefixes first, then one lookup per missing name."""
        await self.ensure_root()
        await self.sync_changes()
        parts = split_path(path)
        known = len(parts)
        while known and "/".join(parts[:known]) not in self.entries:
            known -= 1
        entry = self.entries["/".join(parts[:known])]
        for i in range(known, len(parts)):
            sub = "/".join(parts[: i + 1])
            if not entry.folder:
                raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", path)
            meta = await self.lookup(entry.id, parts[i], sub)
            if meta is None:
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
            entry = self.remember(sub, meta, entry.id)
        return entry

    async def retrying(self, keys: tuple[str, ...], fn: Callable[[], Awaitable[Any]]) -> Any:
        """`fn()`; if it fails with FileNotFoundError while one of `keys` came
        from the cache, the cached ids may be stale (changed elsewhere, not yet
        seen in the change feed): forget them and run `fn` once more."""
        cached = [k for k in keys if k in self.entries]
        try:
            return await fn()
        except FileNotFoundError:
            if not cached:
                raise
            for key in cached:
                self.forget(key)
            return await fn()

    async def with_entry(self, path: str, op: Callable[[Entry], Awaitable[Any]]) -> Any:
        """`op(entry at path)`, resolved again once if a cached id turns out stale."""

        async def run() -> Any:
            return await op(await self.resolve(path))

        return await self.retrying(("/".join(split_path(path)),), run)

    async def parent(self, path: str) -> tuple[Entry, str]:
        """(entry of the parent folder, leaf name) for a path that is not the root."""
        parts = split_path(path)
        if not parts:
            raise PermissionError(errno.EACCES, "the root itself cannot be replaced", path)
        parent = await self.resolve("/".join(parts[:-1]))
        if not parent.folder:
            raise NotADirectoryError(errno.ENOTDIR, "a parent is a file", path)
        return parent, parts[-1]
