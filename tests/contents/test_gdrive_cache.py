"""The path → id cache stays correct under renames, moves and deletes, ours or someone else's."""

from __future__ import annotations

import pytest

from tests.contents.gdrive_fixture import BackendFactory, drive_double, make_gdrive_backend  # noqa: F401  (fixtures)
from tests.support.drive_double import DriveDouble


def _lookups(double: DriveDouble, since: int) -> int:
    return sum(1 for m, p, q in double.requests[since:] if p == "/drive/v3/files" and "name =" in q.get("q", ""))


async def test_cache_saves_lookups(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend()
    await backend.mkdir("a")
    await backend.mkdir("a/b")
    await backend.write("a/b/c.txt", b"c")
    start = len(drive_double.requests)
    for _ in range(3):
        assert await backend.read("a/b/c.txt") == b"c"
    assert _lookups(drive_double, start) == 0


async def test_rename_of_a_parent_through_the_backend(make_gdrive_backend: BackendFactory) -> None:
    backend = make_gdrive_backend()
    await backend.mkdir("a")
    await backend.mkdir("a/b")
    await backend.write("a/b/c.txt", b"c")
    assert await backend.read("a/b/c.txt") == b"c"
    await backend.move("a", "z")
    assert await backend.read("z/b/c.txt") == b"c"
    for stale in ("a", "a/b", "a/b/c.txt"):
        with pytest.raises(FileNotFoundError):
            await backend.stat(stale)
    with pytest.raises(FileNotFoundError):
        await backend.write("a/b/c.txt", b"lost")
    await backend.mkdir("a")  # a new folder under the old name is a different one
    assert await backend.list("a") == []
    await backend.move("z/b", "a/b")
    assert await backend.read("a/b/c.txt") == b"c"
    assert await backend.list("z") == []


@pytest.mark.parametrize("poll", [0.0, -1.0], ids=["change-feed", "no-feed"])
async def test_external_delete_and_recreate(make_gdrive_backend: BackendFactory, drive_double: DriveDouble, poll: float) -> None:
    backend = make_gdrive_backend(changes_poll_interval=poll)
    folder = make_gdrive_backend.folder
    await backend.write("f.txt", b"ours")
    assert await backend.read("f.txt") == b"ours"
    drive_double.remove(drive_double.find(folder, "f.txt")["id"])
    with pytest.raises(FileNotFoundError):
        await backend.read("f.txt")
    drive_double.put_file("f.txt", folder, b"theirs")
    assert await backend.read("f.txt") == b"theirs"
    await backend.write("f.txt", b"ours again")
    assert [f["name"] for f in drive_double.children(folder)] == ["f.txt"]


@pytest.mark.parametrize("poll", [0.0, -1.0], ids=["change-feed", "no-feed"])
async def test_external_move_of_a_file(make_gdrive_backend: BackendFactory, drive_double: DriveDouble, poll: float) -> None:
    backend = make_gdrive_backend(changes_poll_interval=poll)
    folder = make_gdrive_backend.folder
    await backend.mkdir("x")
    await backend.mkdir("y")
    await backend.write("x/f.txt", b"f")
    assert (await backend.stat("x/f.txt")).size == 1
    y = drive_double.find(folder, "y")["id"]
    drive_double.rename(drive_double.find(drive_double.find(folder, "x")["id"], "f.txt")["id"], name="g.txt", parent=y)
    with pytest.raises(FileNotFoundError):
        await backend.stat("x/f.txt")
    with pytest.raises(FileNotFoundError):
        await backend.read("x/f.txt")
    assert await backend.read("y/g.txt") == b"f"
    assert [s.name for s in await backend.list("x")] == []


async def test_external_rename_of_an_ancestor(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(changes_poll_interval=0)
    folder = make_gdrive_backend.folder
    await backend.mkdir("d")
    await backend.mkdir("d/e")
    await backend.write("d/e/f.txt", b"deep")
    assert await backend.read("d/e/f.txt") == b"deep"
    drive_double.rename(drive_double.find(folder, "d")["id"], name="renamed")
    # Only the change feed can tell that "d" is gone: the leaf's own metadata did not change.
    with pytest.raises(FileNotFoundError):
        await backend.read("d/e/f.txt")
    assert await backend.read("renamed/e/f.txt") == b"deep"


async def test_two_servers_on_one_folder(make_gdrive_backend: BackendFactory) -> None:
    one = make_gdrive_backend()
    two = make_gdrive_backend()
    await one.mkdir("shared")
    await one.write("shared/nb.ipynb", b"v1")
    assert await two.read("shared/nb.ipynb") == b"v1"
    await one.move("shared", "moved")
    with pytest.raises(FileNotFoundError):
        await two.read("shared/nb.ipynb")
    await one.mkdir("shared")
    await one.write("shared/nb.ipynb", b"v2 in a new folder")
    assert await two.read("shared/nb.ipynb") == b"v2 in a new folder"
    assert await two.read("moved/nb.ipynb") == b"v1"
    await two.delete("moved")
    with pytest.raises(FileNotFoundError):
        await one.list("moved")
