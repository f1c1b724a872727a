"""Conformance: the backend primitives themselves, on every backend.

The same contract `contents/base.py` states — error types for missing paths
and wrong kinds, conditional writes, recursive delete, moves, streaming
reads — checked against the temp dir, SeaweedFS and the Drive double alike,
below the shared `ContentsManager`.
"""

from __future__ import annotations

import os

import pytest

from zasperhub.contents.base import Backend, PreconditionFailed

MIB = 1 << 20


async def names(backend: Backend, path: str) -> list[tuple[str, str]]:
    return sorted((e.name, e.kind) for e in await backend.list(path))


async def test_file_roundtrip_and_stat(backend: Backend) -> None:
    st = await backend.write("hello.txt", b"hi there")
    assert st.kind == "file" and st.size == 8 and st.version and st.mtime.tzinfo is not None
    assert await backend.read("hello.txt") == b"hi there"
    again = await backend.stat("hello.txt")
    assert (again.version, again.size) == (st.version, 8)
    assert await names(backend, "") == [("hello.txt", "file")]


async def test_errors_for_missing_and_wrong_kinds(backend: Backend) -> None:
    await backend.write("f.txt", b"x")
    await backend.mkdir("d")
    refused = [
        (FileNotFoundError, backend.stat("nope")),
        (FileNotFoundError, backend.read("nope")),
        (FileNotFoundError, backend.list("nope")),
        (NotADirectoryError, backend.list("f.txt")),
        (IsADirectoryError, backend.read("d")),
        (IsADirectoryError, backend.write("d", b"over a folder")),
        (FileNotFoundError, backend.write("missing/x.txt", b"x")),
        (NotADirectoryError, backend.write("f.txt/x.txt", b"x")),
        (FileExistsError, backend.mkdir("d")),
        (FileExistsError, backend.mkdir("f.txt")),
        (FileNotFoundError, backend.mkdir("missing/sub")),
        (FileNotFoundError, backend.delete("nope")),
        (PermissionError, backend.delete("")),
    ]
    for bad in ("../escape.txt", "a/../../x", "./x"):
        refused.append((PermissionError, backend.write(bad, b"x")))
    for error, operation in refused:
        with pytest.raises(error):
            await operation
    # Nothing was damaged by the refused operations.
    assert await backend.read("f.txt") == b"x"
    assert await names(backend, "") == [("d", "directory"), ("f.txt", "file")]


async def test_conditional_writes(backend: Backend) -> None:
    first = await backend.write("nb.ipynb", b"v1", exclusive=True)
    with pytest.raises(FileExistsError):
        await backend.write("nb.ipynb", b"clobber", exclusive=True)
    second = await backend.write("nb.ipynb", b"v2", if_version=first.version)
    assert second.version != first.version
    with pytest.raises(PreconditionFailed):
        await backend.write("nb.ipynb", b"stale", if_version=first.version)
    assert await backend.read("nb.ipynb") == b"v2"
    await backend.delete("nb.ipynb")
    with pytest.raises(PreconditionFailed):
        await backend.write("nb.ipynb", b"after delete", if_version=second.version)
    with pytest.raises(FileNotFoundError):
        await backend.stat("nb.ipynb")


async def test_delete_nested_tree(backend: Backend) -> None:
    await backend.mkdir("t")
    await backend.mkdir("t/empty")
    await backend.mkdir("t/sub")
    await backend.write("t/sub/a.txt", b"a")
    await backend.write("t/b.txt", b"b")
    await backend.write("keep.txt", b"k")
    await backend.delete("t")
    with pytest.raises(FileNotFoundError):
        await backend.stat("t")
    assert await names(backend, "") == [("keep.txt", "file")]
    await backend.delete("keep.txt")
    assert await backend.list("") == []


async def test_move_file_and_tree(backend: Backend) -> None:
    await backend.write("a.txt", b"a")
    await backend.move("a.txt", "b.txt")
    assert await names(backend, "") == [("b.txt", "file")]
    await backend.mkdir("src")
    await backend.mkdir("src/empty")
    await backend.write("src/x.txt", b"x")
    await backend.mkdir("dst")
    with pytest.raises(FileExistsError):
        await backend.move("src", "dst")
    with pytest.raises(OSError):
        await backend.move("src", "src/inside")
    with pytest.raises(FileNotFoundError):
        await backend.move("src", "missing/parent")
    await backend.move("src", "dst/moved")
    assert await names(backend, "dst/moved") == [("empty", "directory"), ("x.txt", "file")]
    assert await backend.read("dst/moved/x.txt") == b"x"
    with pytest.raises(FileNotFoundError):
        await backend.stat("src")


async def test_read_stream_in_pieces(backend: Backend) -> None:
    data = os.urandom(3 * MIB + 7)
    await backend.write("blob.bin", data)
    pieces = [p async for p in backend.read_stream("blob.bin", chunk_size=MIB)]
    assert len(pieces) >= 4 and all(len(p) <= MIB for p in pieces)
    assert b"".join(pieces) == data
    await backend.write("empty.bin", b"")
    assert b"".join([p async for p in backend.read_stream("empty.bin")]) == b""
    with pytest.raises(FileNotFoundError):
        [p async for p in backend.read_stream("nope")]
