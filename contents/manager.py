"""`ContentsManager`: the Jupyter contents model, written once over any `Backend`.

Models have the shape of Jupyter Server 2.x (`name`, `path`, `type`,
`writable`, `created`, `last_modified`, `size`, `mimetype`, `format`,
`content`, `hash`, `hash_algorithm`).  The manager is framework-free: bad
requests raise `ValueError` (HTTP 400), missing things `FileNotFoundError`
(404), conflicts `FileExistsError` / `PreconditionFailed` (409) and store
outages `StorageUnavailable` (503); the web layer maps them once.

Rules enforced here for every backend:

- every path is normalised (`contents.paths`) before a backend call;
- hidden entries (dotfiles) are left out of listings, read as 404 and
  refused for writes unless `allow_hidden`;
- a save may carry the hash the client last read (`expected_hash`); if the
  stored file no longer has it the save fails with 409 instead of
  overwriting someone else's newer version;
- checkpoints live in the same store, next to the file, as Jupyter keeps
  them: `dir/.ipynb_checkpoints/name-checkpoint.ext`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import errno
import hashlib
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Any

from traitlets import Bool, Float, Int, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from zasperhub.contents import notebook as nbio
from zasperhub.contents.base import Backend, PreconditionFailed, Stat
from zasperhub.contents.paths import increment_name, is_hidden, join_path, matches_any, normalize_path, split_path
from zasperhub.contents.uploads import ChunkedUploads

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_TYPES = frozenset({"notebook", "file", "directory"})
CHECKPOINT_ID = "checkpoint"
#: Above this many bytes, hashing and (de)coding run in a worker thread.
_INLINE_LIMIT = 1 << 20
#: Most files and folders one folder copy may create.
_MAX_COPY_ENTRIES = 10_000


def iso(dt: datetime.datetime | None) -> str:
    """ISO 8601 in UTC with a `Z`, the way Jupyter clients parse it."""
    dt = dt or _EPOCH
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _not_found(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, "No such file or directory", path)


class ContentsManager(LoggingConfigurable):
    """The contents API (`/api/contents`) over one storage backend."""

    allow_hidden = Bool(False, config=True, help="Serve and accept hidden files and directories (dotfiles).")
    hide_globs = List(
        Unicode(),
        ["__pycache__", "*.pyc", "*.pyo", ".DS_Store", "*~"],
        config=True,
        help="Names left out of directory listings (they can still be opened by path).",
    )
    hash_algorithm = Unicode("sha256", config=True, help="hashlib algorithm for the `hash` field.")
    untitled_notebook = Unicode("Untitled", config=True, help="Base name of new notebooks.")
    untitled_file = Unicode("untitled", config=True, help="Base name of new files.")
    untitled_directory = Unicode("Untitled Folder", config=True, help="Base name of new directories.")
    checkpoint_dir = Unicode(".ipynb_checkpoints", config=True, help="Folder (beside each file) holding its checkpoint.")
    validate_notebooks = Bool(True, config=True, help="Check saved notebooks against the nbformat schema (message only).")
    max_copy_folder_size_mb = Int(500, config=True, help="Largest folder (MB) that may be copied in one request.")
    upload_idle_timeout = Float(3600.0, config=True, help="Seconds after which an unfinished chunked upload is discarded.")

    @validate("hash_algorithm")
    def _check_algorithm(self, proposal: Any) -> str:
        name = proposal["value"]
        if name not in hashlib.algorithms_available:
            raise ValueError(f"Unknown hash algorithm {name!r}")
        return name

    def __init__(self, backend: Backend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self.uploads = ChunkedUploads(backend, idle_timeout=lambda: self.upload_idle_timeout)
        # Saves of one path are serialised so "check hash, then write" is not
        # interleaved with another save from this server.
        self._locks: dict[str, asyncio.Lock] = {}

    # -- helpers ---------------------------------------------------------------------
    def _path(self, path: object, *, write: bool = False) -> str:
        """Normalise `path` and apply the hidden-file policy."""
        clean = normalize_path(path)
        if not self.allow_hidden and is_hidden(clean):
            if write:
                raise ValueError(f"Cannot access hidden file or directory {clean!r} (allow_hidden is off)")
            raise _not_found(clean)
        return clean

    def _lock(self, path: str) -> asyncio.Lock:
        lock = self._locks.get(path)
        if lock is None:
            if len(self._locks) > 1024:  # drop idle locks so the dict stays small
                for key in [k for k, v in self._locks.items() if not v.locked()]:
                    del self._locks[key]
            lock = self._locks[path] = asyncio.Lock()
        return lock

    def _hash(self, data: bytes) -> str:
        return hashlib.new(self.hash_algorithm, data).hexdigest()

    async def _hash_stream(self, path: str) -> str:
        h = hashlib.new(self.hash_algorithm)
        async for piece in self.backend.read_stream(path):
            h.update(piece)
        return h.hexdigest()

    def _should_list(self, name: str) -> bool:
        if not self.allow_hidden and name.startswith("."):
            return False
        return not matches_any(name, self.hide_globs)

    @staticmethod
    def _guess_type(st: Stat) -> str:
        if st.kind == "directory":
            return "directory"
        return "notebook" if st.name.endswith(".ipynb") else "file"

    def _base_model(self, st: Stat, type_: str) -> dict[str, Any]:
        return {
            "name": st.name,
            "path": st.path,
            "type": type_,
            "writable": st.writable,
            "created": iso(st.created or st.mtime),
            "last_modified": iso(st.mtime),
            "size": st.size if type_ != "directory" else None,
            "mimetype": mimetypes.guess_type(st.name)[0] if type_ == "file" else None,
            "content": None,
            "format": None,
            "hash": None,
            "hash_algorithm": None,
        }

    # -- read -------------------------------------------------------------------------
    async def get(
        self, path: str, *, type: str | None = None, format: str | None = None, content: bool = True, require_hash: bool = False
    ) -> dict[str, Any]:
        """The model at `path`; directories list their children without content."""
        if type is not None and type not in _TYPES:
            raise ValueError(f"Unknown type {type!r}")
        if format not in (None, "text", "base64", "json"):
            raise ValueError(f"Format {format!r} is invalid")
        path = self._path(path)
        st = await self.backend.stat(path)
        if st.kind == "directory":
            if type not in (None, "directory"):
                raise ValueError(f"{path!r} is a directory, not a {type}")
            model = self._base_model(st, "directory")
            if content:
                children = await self.backend.list(path)
                model["content"] = [
                    self._base_model(c, self._guess_type(c)) for c in children if self._should_list(c.name)
                ]
                model["format"] = "json"
            return model
        if type == "directory":
            raise ValueError(f"{path!r} is not a directory")
        type_ = type or self._guess_type(st)
        model = self._base_model(st, type_)
        if not content:
            if require_hash:
                model["hash"] = await self._hash_stream(path)
                model["hash_algorithm"] = self.hash_algorithm
            return model
        data = await self.backend.read(path)
        model["size"] = len(data)
        if len(data) > _INLINE_LIMIT:  # hashing/decoding megabytes would stall the loop
            await asyncio.to_thread(self._fill_content, model, data, format, require_hash)
        else:
            self._fill_content(model, data, format, require_hash)
        return model

    def _fill_content(self, model: dict[str, Any], data: bytes, format: str | None, require_hash: bool) -> None:
        """Set content/format (and hash) of a file or notebook model from its bytes."""
        path = model["path"]
        if require_hash:
            model["hash"] = self._hash(data)
            model["hash_algorithm"] = self.hash_algorithm
        if model["type"] == "notebook":
            model["content"] = nbio.parse_notebook(data, path)
            model["format"] = "json"
            return
        if format in (None, "text"):
            try:
                model["content"] = data.decode("utf-8")
                model["format"] = "text"
                model["mimetype"] = model["mimetype"] or "text/plain"
                return
            except UnicodeDecodeError:
                if format == "text":
                    raise ValueError(f"{path} is not UTF-8 encoded") from None
        model["content"] = base64.b64encode(data).decode("ascii")
        model["format"] = "base64"
        model["mimetype"] = model["mimetype"] or "application/octet-stream"

    async def exists(self, path: str) -> bool:
        """True if a file or directory is at `path` (hidden ones count as absent)."""
        return await self._kind(path) is not None

    async def file_exists(self, path: str) -> bool:
        """True if a (visible) file is at `path`."""
        return await self._kind(path) == "file"

    async def dir_exists(self, path: str) -> bool:
        """True if a (visible) directory is at `path`."""
        return await self._kind(path) == "directory"

    async def _kind(self, path: str) -> str | None:
        try:
            return (await self.backend.stat(self._path(path))).kind
        except FileNotFoundError:
            return None

    async def open_stream(self, path: str) -> tuple[Stat, AsyncIterator[bytes]]:
        """Stat and a piece-by-piece reader of the file at `path` (for downloads)."""
        path = self._path(path)
        st = await self.backend.stat(path)
        if st.kind == "directory":
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        return st, self.backend.read_stream(path)

    # -- write ------------------------------------------------------------------------
    async def save(self, model: dict[str, Any], path: str, *, expected_hash: str | None = None) -> dict[str, Any]:
        """Save `model` at `path` and return its model without content.

        `model["chunk"]` (1, 2, …, -1) streams a large file in pieces; nothing
        is visible at `path` until the last piece.  `expected_hash` makes the
        save conditional on the stored file still having that hash.
        """
        if not isinstance(model, dict):
            raise ValueError("The request body must be a JSON object (a contents model)")
        path = self._path(path, write=True)
        if not path:
            raise ValueError("Cannot save to the root directory itself")
        if "type" not in model:
            raise ValueError("No file type provided")
        type_ = model["type"]
        if type_ not in _TYPES:
            raise ValueError(f"Unhandled contents type: {type_!r}")
        if "content" not in model and type_ != "directory":
            raise ValueError("No file content provided")
        chunk = model.get("chunk")
        if chunk is not None:
            return await self._save_chunk(model, path, chunk, expected_hash)
        if type_ == "directory":
            return await self._save_directory(path)
        message = None
        if type_ == "notebook":
            nb = nbio.check_notebook(model["content"], path)
            data = await asyncio.to_thread(nbio.serialize_notebook, nb)
        elif isinstance(model["content"], str) and len(model["content"]) > _INLINE_LIMIT:
            data = await asyncio.to_thread(self._decode_file, model, path)
        else:
            data = self._decode_file(model, path)
        async with self._lock(path):
            st = await self._write_checked(path, data, expected_hash)
        if type_ == "notebook":
            if self.validate_notebooks:
                message = await asyncio.to_thread(nbio.validation_message, nb)
            # Jupyter keeps one checkpoint per notebook from its first save on.
            if not await self.list_checkpoints(path):
                await self.create_checkpoint(path)
        result = self._base_model(st, type_)
        result["hash"] = self._hash(data) if len(data) <= _INLINE_LIMIT else await asyncio.to_thread(self._hash, data)
        result["hash_algorithm"] = self.hash_algorithm
        if message:
            result["message"] = message
        return result

    @staticmethod
    def _decode_file(model: dict[str, Any], path: str) -> bytes:
        fmt, content = model.get("format"), model["content"]
        if fmt not in ("text", "base64"):
            raise ValueError("Must specify format of file contents as 'text' or 'base64'")
        if not isinstance(content, str):
            raise ValueError(f"File content for {path} must be a string")
        try:
            if fmt == "text":
                return content.encode("utf-8")
            return base64.b64decode(content.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error) as e:
            raise ValueError(f"Encoding error saving {path}: {e}") from None

    async def _write_checked(self, path: str, data: bytes, expected_hash: str | None) -> Stat:
        if expected_hash is None:
            return await self.backend.write(path, data)
        try:
            st = await self.backend.stat(path)
        except FileNotFoundError:
            raise PreconditionFailed(errno.EEXIST, "File was deleted since it was read", path) from None
        if st.kind != "file":
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        current = await self._hash_stream(path)
        if current != expected_hash:
            raise PreconditionFailed(errno.EEXIST, "File changed since it was read (stale hash); reload before saving", path)
        # The version pins the check above to the bytes we hashed.
        return await self.backend.write(path, data, if_version=st.version)

    async def _save_directory(self, path: str) -> dict[str, Any]:
        try:
            await self.backend.mkdir(path)
        except FileExistsError:
            st = await self.backend.stat(path)
            if st.kind != "directory":
                raise ValueError(f"{path!r} exists and is not a directory") from None
        return await self.get(path, content=False)

    async def _save_chunk(self, model: dict[str, Any], path: str, chunk: Any, expected_hash: str | None) -> dict[str, Any]:
        if model["type"] != "file":
            raise ValueError(f'File type "{model["type"]}" is not supported for chunked upload')
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk == 0 or chunk < -1:
            raise ValueError(f"Invalid chunk number {chunk!r} (1, 2, … then -1)")
        data = self._decode_file(model, path)
        if chunk == 1 and expected_hash is not None:
            current = await self._hash_stream(path) if await self.file_exists(path) else None
            if current != expected_hash:
                raise PreconditionFailed(errno.EEXIST, "File changed since it was read (stale hash)", path)
        st = await self.uploads.feed(path, chunk, data)
        if st is None:  # more chunks to come: describe the upload so far
            size = self.uploads.size(path)
            now = datetime.datetime.now(datetime.timezone.utc)
            st = Stat(path=path, kind="file", size=size, mtime=now, created=now)
        return self._base_model(st, "file")

    async def new(self, model: dict[str, Any] | None, path: str) -> dict[str, Any]:
        """Create `path` from `model` (empty notebook/file when it has no content)."""
        model = dict(model or {})
        path = self._path(path, write=True)
        model.setdefault("type", "notebook" if path.endswith(".ipynb") else "file")
        if "content" not in model and model["type"] != "directory":
            if model["type"] == "notebook":
                model["content"], model["format"] = nbio.new_notebook(), "json"
            else:
                model["content"], model["format"], model["type"] = "", "text", "file"
        return await self.save(model, path)

    async def new_untitled(self, path: str = "", *, type: str = "", ext: str = "") -> dict[str, Any]:
        """Create Untitled.ipynb / untitled{ext} / "Untitled Folder" (numbered if taken) in `path`."""
        path = self._path(path, write=True)
        if not await self.dir_exists(path):
            raise FileNotFoundError(errno.ENOENT, "No such directory", path)
        if not isinstance(ext, str) or "/" in ext:
            raise ValueError(f"Invalid extension {ext!r}")
        type_ = type or ("notebook" if ext == ".ipynb" else "file")
        insert = ""
        if type_ == "directory":
            base, insert, ext = self.untitled_directory, " ", ""
        elif type_ == "notebook":
            base, ext = self.untitled_notebook, ".ipynb"
        elif type_ == "file":
            base = self.untitled_file
        else:
            raise ValueError(f"Unexpected model type: {type_!r}")
        taken = {st.name for st in await self.backend.list(path)}
        # Another client may take the same name between listing and
        # creating: creation is exclusive, and a clash moves to the next name.
        for _ in range(20):
            name = increment_name(base + ext, taken, insert)
            target = join_path(path, name)
            try:
                if type_ == "directory":
                    await self.backend.mkdir(target)
                    return await self.get(target, content=False)
                if type_ == "notebook":
                    data = nbio.serialize_notebook(nbio.new_notebook())
                else:
                    data = b""
                st = await self.backend.write(target, data, exclusive=True)
            except FileExistsError:
                taken.add(name)
                continue
            if type_ == "notebook":
                await self.create_checkpoint(target)
            result = self._base_model(st, type_)
            result["hash"], result["hash_algorithm"] = self._hash(data), self.hash_algorithm
            return result
        raise FileExistsError(errno.EEXIST, "Could not find a free untitled name", path)

    async def copy(self, from_path: str, to_path: str | None = None) -> dict[str, Any]:
        """Copy a file or folder; into a directory it becomes `name-Copy1.ext` (numbered)."""
        src = self._path(from_path, write=True)
        if not src:
            raise ValueError("Cannot copy the root directory")
        st = await self.backend.stat(src)
        is_dir = st.kind == "directory"
        from_dir, from_name = split_path(src)
        dst_dir = from_dir if to_path is None else self._path(to_path, write=True)
        if is_dir and (dst_dir + "/").startswith(src + "/"):
            raise ValueError(f"Cannot copy {src!r} into itself")
        if await self.dir_exists(dst_dir):
            # "a-Copy1.ipynb" copies to "a-Copy2.ipynb", not "a-Copy1-Copy1.ipynb".
            base_name = _strip_copy_suffix(from_name)
            taken = {c.name for c in await self.backend.list(dst_dir)}
            for _ in range(20):
                target = join_path(dst_dir, increment_name(base_name, taken, "-Copy"))
                try:
                    new = await (self._copy_tree(src, target) if is_dir else self.backend.copy(src, target))
                    break
                except FileExistsError:
                    taken.add(split_path(target)[1])
            else:
                raise FileExistsError(errno.EEXIST, "Could not find a free name for the copy", dst_dir)
        elif to_path is None:
            raise _not_found(dst_dir)
        else:
            parent, _ = split_path(dst_dir)
            if not await self.dir_exists(parent):
                raise FileNotFoundError(errno.ENOENT, "No such parent directory to copy the file in", parent)
            new = await (self._copy_tree(src, dst_dir) if is_dir else self.backend.copy(src, dst_dir))
        return self._base_model(new, self._guess_type(new))

    async def _copy_tree(self, src: str, dst: str) -> Stat:
        """Copy folder `src` to the new folder `dst`, within the size limit; all or nothing."""
        dirs, files, total = [""], [], 0
        for rel in dirs:  # breadth-first; `dirs` grows while we walk it
            for child in await self.backend.list(join_path(src, rel) if rel else src):
                child_rel = join_path(rel, child.name)
                if child.kind == "directory":
                    dirs.append(child_rel)
                else:
                    files.append(child_rel)
                    total += child.size or 0
                if len(dirs) + len(files) > _MAX_COPY_ENTRIES or total > self.max_copy_folder_size_mb * 1024 * 1024:
                    raise ValueError(
                        f"Folder {src!r} is too large to copy (limits: {self.max_copy_folder_size_mb} MB,"
                        f" {_MAX_COPY_ENTRIES} entries)"
                    )
        await self.backend.mkdir(dst)  # FileExistsError: the caller picks another name
        try:
            for rel in dirs[1:]:
                await self.backend.mkdir(join_path(dst, rel))
            for rel in files:
                await self.backend.copy(join_path(src, rel), join_path(dst, rel))
        except BaseException:
            # A half-made copy is worse than none; the source is untouched.
            try:
                await self.backend.delete(dst)
            except OSError as e:
                self.log.warning("Could not remove the partial copy %s: %s", dst, e)
            raise
        return await self.backend.stat(dst)

    async def rename(self, path: str, new_path: str) -> dict[str, Any]:
        """Move a file or directory (and a file's checkpoint) to `new_path`."""
        src = self._path(path, write=True)
        dst = self._path(new_path, write=True)
        if not src or not dst:
            raise ValueError("Cannot rename the root directory")
        if src != dst:
            if dst.startswith(src + "/"):
                raise ValueError(f"Cannot move {src!r} into itself")
            parent, _ = split_path(dst)
            if not await self.dir_exists(parent):
                raise FileNotFoundError(errno.ENOENT, "Target directory does not exist", parent)
            st = await self.backend.stat(src)
            await self.backend.move(src, dst)
            if st.kind == "file":
                await self._move_checkpoint(src, dst)
        return await self.get(dst, content=False)

    async def update(self, model: dict[str, Any], path: str) -> dict[str, Any]:
        """PATCH: only renames (`model["path"]`), as in Jupyter Server."""
        if not isinstance(model, dict):
            raise ValueError("The request body must be a JSON object")
        new_path = model.get("path", path)
        return await self.rename(path, new_path)

    async def delete(self, path: str) -> None:
        """Delete a file (with its checkpoint) or a directory and all it holds."""
        path = self._path(path, write=True)
        if not path:
            raise ValueError("Cannot delete the root directory")
        try:
            kind: str | None = (await self.backend.stat(path)).kind
        except PermissionError:
            kind = None  # e.g. a local link leading out of the root: removable, not readable
        await self.backend.delete(path)
        if kind == "file":
            try:
                await self.backend.delete(self._checkpoint_path(path))
            except FileNotFoundError:
                pass
        await self.uploads.discard(path)

    async def mkdir(self, path: str) -> dict[str, Any]:
        """Create directory `path` (409 if it exists)."""
        path = self._path(path, write=True)
        await self.backend.mkdir(path)
        return await self.get(path, content=False)

    # -- checkpoints --------------------------------------------------------------------
    def _checkpoint_path(self, path: str) -> str:
        parent, name = split_path(path)
        base, dot, ext = name.rpartition(".")
        if not dot or not base:  # no extension (or a dotfile): append the id
            base, ext = name, ""
        else:
            ext = "." + ext
        return join_path(join_path(parent, self.checkpoint_dir), f"{base}-{CHECKPOINT_ID}{ext}")

    async def _copy_over(self, src: str, dst: str) -> Stat:
        """Replace `dst` with the bytes of `src`, streamed, atomically."""
        upload = await self.backend.begin_upload(dst)
        try:
            async for piece in self.backend.read_stream(src):
                if piece:
                    await upload.append(piece)
            return await upload.commit()
        except BaseException:
            await upload.abort()
            raise

    async def _ensure_checkpoint_dir(self, path: str) -> None:
        parent, _ = split_path(path)
        try:
            await self.backend.mkdir(join_path(parent, self.checkpoint_dir))
        except FileExistsError:
            pass

    async def create_checkpoint(self, path: str) -> dict[str, Any]:
        """Snapshot the file at `path`; returns `{"id", "last_modified"}`."""
        path = self._path(path, write=True)
        st = await self.backend.stat(path)
        if st.kind != "file":
            raise ValueError(f"Cannot checkpoint directory {path!r}")
        await self._ensure_checkpoint_dir(path)
        cp = await self._copy_over(path, self._checkpoint_path(path))
        return {"id": CHECKPOINT_ID, "last_modified": iso(cp.mtime)}

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        """The checkpoints of `path` (zero or one)."""
        path = self._path(path)
        try:
            cp = await self.backend.stat(self._checkpoint_path(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [{"id": CHECKPOINT_ID, "last_modified": iso(cp.mtime)}]

    async def restore_checkpoint(self, checkpoint_id: str, path: str) -> None:
        """Put the checkpointed bytes back at `path`."""
        path = self._path(path, write=True)
        if checkpoint_id != CHECKPOINT_ID:
            raise FileNotFoundError(errno.ENOENT, f"Checkpoint {checkpoint_id!r} does not exist", path)
        cp = self._checkpoint_path(path)
        try:
            await self.backend.stat(cp)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "Checkpoint does not exist", path) from None
        async with self._lock(path):
            await self._copy_over(cp, path)

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        """Remove the checkpoint of `path` (404 if there is none)."""
        path = self._path(path, write=True)
        if checkpoint_id != CHECKPOINT_ID:
            raise FileNotFoundError(errno.ENOENT, f"Checkpoint {checkpoint_id!r} does not exist", path)
        try:
            await self.backend.delete(self._checkpoint_path(path))
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "Checkpoint does not exist", path) from None

    async def _move_checkpoint(self, src: str, dst: str) -> None:
        old = self._checkpoint_path(src)
        try:
            await self.backend.stat(old)
        except (FileNotFoundError, NotADirectoryError):
            return
        new = self._checkpoint_path(dst)
        await self._ensure_checkpoint_dir(dst)
        try:
            await self.backend.delete(new)  # a stale checkpoint of an older file
        except FileNotFoundError:
            pass
        await self.backend.move(old, new)

    # -- server integration ---------------------------------------------------------------
    def local_dir(self, api_dir_path: str) -> str | None:
        """The local directory for API directory `api_dir_path` (kernels' cwd), or None."""
        try:
            path = normalize_path(api_dir_path)
        except ValueError:
            return None
        return self.backend.local_dir(path)

    def describe(self) -> str:
        """Where the files live (no secrets)."""
        return self.backend.describe()

    async def close(self) -> None:
        """Abort unfinished uploads and release the backend."""
        await self.uploads.close()
        await self.backend.close()


def _strip_copy_suffix(name: str) -> str:
    """"a-Copy3.ipynb" → "a.ipynb" (as Jupyter does before numbering a copy)."""
    return re.sub(r"-Copy\d*\.", ".", name, count=1)
