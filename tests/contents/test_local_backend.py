"""Local-disk specifics: atomic saves, permissions, symlinks, root confinement."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from zasperhub.contents.local import LocalBackend
from zasperhub.contents.manager import ContentsManager


async def test_save_keeps_permissions_and_replaces_inode(local_backend: LocalBackend, local_root: Path) -> None:
    target = local_root / "script.sh"
    target.write_bytes(b"old")
    os.chmod(target, 0o750)
    before = os.stat(target).st_ino
    await local_backend.write("script.sh", b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o750
    assert os.stat(target).st_ino != before  # replaced by rename, not rewritten in place
    assert sorted(os.listdir(local_root)) == ["script.sh"]  # no temp file left


async def test_new_file_mode_follows_umask(local_backend: LocalBackend, local_root: Path) -> None:
    await local_backend.write("new.txt", b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(local_root / "new.txt").st_mode) == 0o666 & ~umask


async def test_save_through_symlink_writes_target(local_backend: LocalBackend, local_root: Path) -> None:
    (local_root / "real").mkdir()
    (local_root / "real" / "data.txt").write_bytes(b"v1")
    os.chmod(local_root / "real" / "data.txt", 0o600)
    os.symlink("real/data.txt", local_root / "link.txt")
    cm = ContentsManager(local_backend)
    await cm.save({"type": "file", "format": "text", "content": "v2"}, "link.txt")
    assert os.path.islink(local_root / "link.txt")
    assert (local_root / "real" / "data.txt").read_bytes() == b"v2"
    assert stat.S_IMODE(os.stat(local_root / "real" / "data.txt").st_mode) == 0o600
    assert (await cm.get("link.txt"))["content"] == "v2"
    # Deleting the link leaves the target alone.
    await cm.delete("link.txt")
    assert (local_root / "real" / "data.txt").read_bytes() == b"v2"


async def test_symlinks_out_of_root_are_refused(local_backend: LocalBackend, local_root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    os.symlink(outside, local_root / "escape")
    os.symlink(outside / "secret.txt", local_root / "secret-link.txt")
    os.symlink(tmp_path / "nowhere", local_root / "dangling")
    cm = ContentsManager(local_backend)
    assert (await cm.get(""))["content"] == []  # not listed
    for path in ("escape", "escape/secret.txt", "secret-link.txt"):
        with pytest.raises(PermissionError):
            await cm.get(path)
    with pytest.raises(PermissionError):
        await cm.save({"type": "file", "format": "text", "content": "pwned"}, "escape/new.txt")
    with pytest.raises(PermissionError):
        await cm.save({"type": "file", "format": "text", "content": "pwned"}, "secret-link.txt")
    with pytest.raises(PermissionError):
        await cm.save({"type": "file", "format": "text", "content": "pwned"}, "dangling")
    with pytest.raises(PermissionError):
        await cm.mkdir("escape/dir")
    with pytest.raises(PermissionError):
        await cm.rename("escape/secret.txt", "stolen.txt")
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert cm.local_dir("escape") is None
    # Removing the link is allowed and does not follow it.
    await cm.delete("escape")
    assert (outside / "secret.txt").exists()


async def test_aborted_upload_leaves_old_file(local_backend: LocalBackend, local_root: Path) -> None:
    (local_root / "f.bin").write_bytes(b"previous")
    upload = await local_backend.begin_upload("f.bin")
    await upload.append(b"partial")
    assert [p.name for p in local_root.iterdir() if p.name.startswith(".~")]  # spooled on disk
    assert [s.name for s in await local_backend.list("")] == ["f.bin"]
    await upload.abort()
    await upload.abort()  # idempotent
    assert (local_root / "f.bin").read_bytes() == b"previous"
    assert sorted(os.listdir(local_root)) == ["f.bin"]




async def test_errors_carry_api_paths_not_disk_paths(local_backend: LocalBackend, local_root: Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        await local_backend.read("missing/x.txt")
    assert info.value.filename == "missing/x.txt" and str(local_root) not in str(info.value)
    (local_root / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        await local_backend.list("file")
    with pytest.raises(IsADirectoryError):
        await local_backend.write("", b"x")


async def test_local_dir_for_kernels(local_backend: LocalBackend, local_root: Path) -> None:
    cm = ContentsManager(local_backend)
    await cm.mkdir("work")
    assert cm.local_dir("work") == str(local_root / "work")
    assert cm.local_dir("") == str(local_root)
    assert cm.local_dir("missing") is None
    assert cm.local_dir("../..") is None
    assert "local directory" in cm.describe()


async def test_special_files_are_not_served(local_backend: LocalBackend, local_root: Path) -> None:
    os.mkfifo(local_root / "pipe")  # reading it would block a worker thread forever
    cm = ContentsManager(local_backend)
    assert (await cm.get(""))["content"] == []
    with pytest.raises(PermissionError):
        await cm.get("pipe")
    with pytest.raises(PermissionError):
        await cm.open_stream("pipe")
    # The primitives themselves refuse it too, without blocking.
    with pytest.raises(PermissionError):
        await local_backend.read("pipe")
    with pytest.raises(PermissionError):
        await anext(local_backend.read_stream("pipe"))
    with pytest.raises(PermissionError):
        await local_backend.copy("pipe", "copy")


async def test_copy_errors_name_the_right_path(local_backend: LocalBackend, local_root: Path) -> None:
    (local_root / "d").mkdir()
    with pytest.raises(IsADirectoryError) as info:
        await local_backend.copy("d", "e")
    assert info.value.filename == "d"
    with pytest.raises(FileNotFoundError) as missing:
        await local_backend.copy("nope.txt", "e")
    assert missing.value.filename in ("nope.txt", "e") and str(local_root) not in str(missing.value)
    assert sorted(os.listdir(local_root)) == ["d"]  # no temp file left behind
