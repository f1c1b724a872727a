"""`LocalBackend`: the contents primitives on a local directory.

Saves are atomic: bytes go to a temp file in the destination's directory,
are fsync'ed, get the old file's permission bits, and replace the old file
with one `rename`.  Saving through a symlink replaces the symlink's target,
so the link itself survives.

Symlink policy: a symlink inside the root is followed only while its
resolved target stays inside the root.  Links that lead outside (or dangle)
are left out of listings, and every operation through them is refused with
`PermissionError` — except `delete`, which removes the link itself and never
touches what it points to.  This keeps "no escape from the root" true even
for links the user did not create through the API.

All blocking file-system calls run in worker threads (`asyncio.to_thread`),
so a slow disk never stalls the event loop that also carries kernel traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import os
import secrets
import shutil
import stat as stat_mod
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

from zasperhub.contents.base import Backend, PreconditionFailed, Stat, Upload

#: Prefix of our temp files; they are never listed.
TEMP_PREFIX = ".~zasper-"


def _process_umask() -> int:
    """The umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


_NEW_FILE_MODE = 0o666 & ~_process_umask()


def _utc(ts: float) -> datetime.datetime:
    try:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class LocalBackend(Backend):
    """Files under one root directory on local disk."""

    scheme = "file"

    def __init__(self, root_dir: str) -> None:
        if not os.path.isdir(root_dir):
            raise FileNotFoundError(errno.ENOENT, "Root directory does not exist", root_dir)
        self.root = os.path.realpath(root_dir)
        # Serialises check-then-act sequences (conditional writes, no-clobber
        # moves) between worker threads of this process.
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, root_dir: str, parent: Any = None) -> LocalBackend:
        """`""` or `file://` → root_dir; `file:///some/dir` → that directory."""
        path = unquote(urlparse(url).path) if url else ""
        return cls(os.path.abspath(os.path.expanduser(path)) if path else root_dir)

    # -- paths ---------------------------------------------------------------
    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root + os.sep)

    def _os_path(self, path: str, *, follow: bool = True) -> str:
        """The OS path for API `path`, refusing anything that resolves outside the root."""
        if not path:
            return self.root
        # Only canonical API paths: "." or empty segments would give one file
        # several names (and "a/./b" is how traversal checks get dodged).
        if path.startswith("/") or "\\" in path or "\0" in path or any(p in ("", ".", "..") for p in path.split("/")):
            raise PermissionError(errno.EACCES, "Invalid path (outside the root or not canonical)", path)
        joined = os.path.join(self.root, *path.split("/"))
        parent = os.path.dirname(joined)
        # The parent chain must stay inside; the final component too, unless
        # the caller acts on a link itself (delete).
        if not self._inside(os.path.realpath(parent)):
            raise PermissionError(errno.EACCES, "Path leads outside the root", path)
        if follow and not self._inside(os.path.realpath(joined)):
            raise PermissionError(errno.EACCES, "Symlink leads outside the root", path)
        return joined

    @contextlib.contextmanager
    def _errors(self, path: str) -> Iterator[None]:
        """Re-raise OS errors with the API path (never the server's real path)."""
        try:
            yield
        except OSError as e:
            if e.errno is None or not isinstance(e.filename, str) or not e.filename.startswith("/"):
                raise  # already names an API path (never absolute), or no path at all
            cls: type[OSError] = type(e)
            if e.errno == errno.ENOTEMPTY:
                cls = FileExistsError
            raise cls(e.errno, e.strerror, path) from None

    def _run(self, path: str, fn: Callable[..., Any], *args: Any) -> Any:
        def call() -> Any:
            with self._errors(path):
                return fn(*args)

        return asyncio.to_thread(call)

    def _stat_of(self, path: str, st: os.stat_result, os_path: str) -> Stat:
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        return Stat(
            path=path,
            kind="directory" if is_dir else "file",
            size=None if is_dir else st.st_size,
            mtime=_utc(st.st_mtime),
            created=_utc(getattr(st, "st_birthtime", st.st_ctime)),
            writable=os.access(os_path, os.W_OK),
            version=None if is_dir else f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}",
        )

    # -- primitives -------------------------------------------------------------
    def _stat(self, path: str) -> Stat:
        os_path = self._os_path(path)
        st = os.stat(os_path)
        if not (stat_mod.S_ISDIR(st.st_mode) or stat_mod.S_ISREG(st.st_mode)):
            raise PermissionError(errno.EACCES, "Not a regular file or directory", path)
        return self._stat_of(path, st, os_path)

    async def stat(self, path: str) -> Stat:
        return await self._run(path, self._stat, path)

    def _list(self, path: str) -> list[Stat]:
        os_path = self._os_path(path)
        out: list[Stat] = []
        with os.scandir(os_path) as it:
            for entry in it:
                if entry.name.startswith(TEMP_PREFIX):
                    continue
                child = f"{path}/{entry.name}" if path else entry.name
                try:
                    if entry.is_symlink() and not self._inside(os.path.realpath(entry.path)):
                        continue
                    st = entry.stat()
                except OSError:
                    continue  # dangling link or vanished meanwhile
                if stat_mod.S_ISDIR(st.st_mode) or stat_mod.S_ISREG(st.st_mode):
                    out.append(self._stat_of(child, st, entry.path))
        return out

    async def list(self, path: str) -> list[Stat]:
        return await self._run(path, self._list, path)

    def _open(self, path: str) -> BinaryIO:
        """Open a regular file for reading (never a FIFO/device: those could block forever)."""
        fd = os.open(self._os_path(path), os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat_mod.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
            if not stat_mod.S_ISREG(mode):
                raise PermissionError(errno.EACCES, "Not a regular file", path)
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _read(self, path: str) -> bytes:
        with self._open(path) as f:
            return f.read()

    async def read(self, path: str) -> bytes:
        return await self._run(path, self._read, path)

    async def read_stream(self, path: str, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        f: BinaryIO = await self._run(path, self._open, path)
        try:
            while True:
                piece = await self._run(path, f.read, chunk_size)
                if not piece:
                    break
                yield piece
        finally:
            f.close()

    def _target(self, path: str) -> str:
        """Where a save of `path` really lands: through symlinks, inside the root."""
        os_path = self._os_path(path)
        real = os.path.realpath(os_path)
        if os.path.isdir(real):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        parent = os.path.dirname(real)
        if not os.path.exists(parent):
            raise FileNotFoundError(errno.ENOENT, "Parent directory does not exist", path)
        if not os.path.isdir(parent):
            raise NotADirectoryError(errno.ENOTDIR, "Parent is not a directory", path)
        return real

    def _install(self, path: str, tmp: str, target: str, *, if_version: str | None, exclusive: bool) -> Stat:
        """Atomically put the finished temp file `tmp` at `target`."""
        with self._lock:
            try:
                old = os.stat(target)
            except FileNotFoundError:
                old = None
            if exclusive and (old is not None or os.path.lexists(target)):
                raise FileExistsError(errno.EEXIST, "File exists", path)
            if if_version is not None:
                current = None if old is None else f"{old.st_ino}-{old.st_mtime_ns}-{old.st_size}"
                if current != if_version:
                    raise PreconditionFailed(errno.EEXIST, "File changed since it was read", path)
            # Keep the permission bits (and owner, where we may) of the file
            # being replaced; new files get the usual 0666 & ~umask.
            os.chmod(tmp, stat_mod.S_IMODE(old.st_mode) if old is not None else _NEW_FILE_MODE)
            if old is not None and (old.st_uid, old.st_gid) != (os.getuid(), os.getgid()):
                with contextlib.suppress(OSError):
                    os.chown(tmp, old.st_uid, old.st_gid)
            if exclusive:
                os.link(tmp, target)  # fails if something appeared meanwhile
                os.unlink(tmp)
            else:
                os.replace(tmp, target)
        _fsync_dir(os.path.dirname(target))
        return self._stat_of(path, os.stat(target), target)

    def _write_via_temp(
        self, path: str, fill: Callable[[BinaryIO], object], *, if_version: str | None, exclusive: bool
    ) -> Stat:
        """Write a temp file next to `path` with `fill`, fsync it, then install it atomically."""
        target = self._target(path)
        fd, tmp = _mkstemp(os.path.dirname(target))
        try:
            with os.fdopen(fd, "wb") as f:
                fill(f)
                f.flush()
                os.fsync(f.fileno())
            return self._install(path, tmp, target, if_version=if_version, exclusive=exclusive)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _write(self, path: str, data: bytes, if_version: str | None, exclusive: bool) -> Stat:
        return self._write_via_temp(path, lambda f: f.write(data), if_version=if_version, exclusive=exclusive)

    async def write(self, path: str, data: bytes, *, if_version: str | None = None, exclusive: bool = False) -> Stat:
        return await self._run(path, self._write, path, data, if_version, exclusive)

    def _delete(self, path: str) -> None:
        if not path:
            raise PermissionError(errno.EACCES, "Refusing to delete the root", path)
        os_path = self._os_path(path, follow=False)
        if os.path.islink(os_path) or not os.path.isdir(os_path):
            os.unlink(os_path)  # a link is removed, never what it points to
        else:
            shutil.rmtree(os_path)

    async def delete(self, path: str) -> None:
        await self._run(path, self._delete, path)

    def _move(self, src: str, dst: str) -> None:
        src_os = self._os_path(src, follow=False)
        dst_os = self._os_path(dst, follow=False)
        if not os.path.lexists(src_os):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", src)
        if not src or (dst + "/").startswith(src + "/"):
            raise PermissionError(errno.EINVAL, "Cannot move a directory into itself", dst)
        with self._lock:
            # A case-only rename on a case-insensitive disk finds "itself".
            if os.path.lexists(dst_os) and not _same_entry(src_os, dst_os):
                raise FileExistsError(errno.EEXIST, "File already exists", dst)
            parent = os.path.dirname(dst_os)
            if not os.path.isdir(parent):
                raise FileNotFoundError(errno.ENOENT, "Target directory does not exist", dst)
            os.rename(src_os, dst_os)

    async def move(self, src: str, dst: str) -> None:
        await self._run(src, self._move, src, dst)

    def _mkdir(self, path: str) -> None:
        os_path = self._os_path(path)
        if os.path.lexists(os_path):
            raise FileExistsError(errno.EEXIST, "File exists", path)
        os.mkdir(os_path)

    async def mkdir(self, path: str) -> None:
        await self._run(path, self._mkdir, path)

    def _copy(self, src: str, dst: str) -> Stat:
        src_os = self._os_path(src)
        if os.path.isdir(src_os):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", src)
        with self._open(src) as fin:
            return self._write_via_temp(
                dst, lambda fout: shutil.copyfileobj(fin, fout, 1 << 20), if_version=None, exclusive=True
            )

    async def copy(self, src: str, dst: str) -> Stat:
        return await self._run(dst, self._copy, src, dst)

    async def begin_upload(self, path: str) -> Upload:
        target = await self._run(path, self._target, path)
        fd, tmp = await self._run(path, _mkstemp, os.path.dirname(target))
        return LocalUpload(self, path, tmp, os.fdopen(fd, "wb"))

    def local_dir(self, path: str) -> str | None:
        try:
            os_path = self._os_path(path)
        except OSError:
            return None
        return os_path if os.path.isdir(os_path) else None

    def describe(self) -> str:
        return f"local directory {self.root}"


class LocalUpload(Upload):
    """A chunked upload spooled to a temp file beside its destination."""

    def __init__(self, backend: LocalBackend, path: str, tmp: str, f: BinaryIO) -> None:
        self.backend = backend
        self.path = path
        self._tmp = tmp
        self._file: BinaryIO | None = f

    async def append(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError("upload already finished")
        await self.backend._run(self.path, self._file.write, data)

    def _commit(self) -> Stat:
        assert self._file is not None
        f, self._file = self._file, None
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            # The destination is re-resolved: it may have changed since begin.
            target = self.backend._target(self.path)
            if os.path.dirname(target) != os.path.dirname(self._tmp):
                raise FileNotFoundError(errno.ENOENT, "Target directory changed during upload", self.path)
            return self.backend._install(self.path, self._tmp, target, if_version=None, exclusive=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)

    async def commit(self) -> Stat:
        if self._file is None:
            raise ValueError("upload already finished")
        return await self.backend._run(self.path, self._commit)

    def _abort(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)


def _mkstemp(directory: str) -> tuple[int, str]:
    """A new private temp file in `directory` (hidden, never listed)."""
    for _ in range(10):
        tmp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "Could not create a temp file", directory)


def _fsync_dir(directory: str) -> None:
    """Persist a rename (best effort: not every file system allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _same_entry(a: str, b: str) -> bool:
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
    except OSError:
        return False
