"""S3 backend against real SeaweedFS: layout, directories, conditional writes, copy/move, streaming."""

from __future__ import annotations

import os

import pytest

from tests.contents.s3_fixture import S3_BUCKET, make_s3_backend, s3_backend, seaweedfs  # noqa: F401  (fixtures)
from zasperhub.contents.base import PreconditionFailed

pytestmark = pytest.mark.s3
MIB = 1 << 20


def names(entries):
    return sorted((e.name, e.kind) for e in entries)




async def test_objects_live_under_the_prefix(s3_backend, seaweedfs):
    await s3_backend.mkdir("d")
    await s3_backend.write("d/ü n.ipynb", b"{}")
    response = seaweedfs.client().list_objects_v2(Bucket=S3_BUCKET, Prefix=s3_backend.prefix)
    keys = sorted(o["Key"] for o in response["Contents"])
    assert keys == [s3_backend.prefix + "d/", s3_backend.prefix + "d/ü n.ipynb"]
    head = seaweedfs.client().head_object(Bucket=S3_BUCKET, Key=s3_backend.prefix + "d/ü n.ipynb")
    assert head["ContentType"] == "application/x-ipynb+json"


async def test_empty_directory_persists(s3_backend, make_s3_backend):
    await s3_backend.mkdir("empty")
    await s3_backend.mkdir("empty/inner")
    # A second backend (new client, nothing cached) on the same prefix sees both.
    other = make_s3_backend(prefix=s3_backend.prefix)
    assert names(await other.list("")) == [("empty", "directory")]
    assert names(await other.list("empty")) == [("inner", "directory")]
    assert await other.list("empty/inner") == []
    assert (await other.stat("empty/inner")).kind == "directory"


async def test_directory_without_marker(s3_backend, seaweedfs):
    # Written by another S3 tool: no marker objects, only a deep key.
    seaweedfs.client().put_object(Bucket=S3_BUCKET, Key=s3_backend.prefix + "a/b/c.txt", Body=b"c")
    assert (await s3_backend.stat("a")).kind == "directory"
    assert (await s3_backend.stat("a/b")).kind == "directory"
    assert names(await s3_backend.list("a")) == [("b", "directory")]
    await s3_backend.write("a/new.txt", b"n")  # the implicit folder is a valid parent
    assert names(await s3_backend.list("a")) == [("b", "directory"), ("new.txt", "file")]






async def test_conditional_writes_emulated(make_s3_backend):
    backend = make_s3_backend(conditional_writes=False)
    first = await backend.write("x", b"1", exclusive=True)
    with pytest.raises(FileExistsError):
        await backend.write("x", b"2", exclusive=True)
    await backend.write("x", b"2", if_version=first.version)
    with pytest.raises(PreconditionFailed):
        await backend.write("x", b"3", if_version=first.version)
    assert await backend.read("x") == b"2"




async def test_copy_is_server_side_and_exclusive(s3_backend):
    await s3_backend.mkdir("dir with space")
    await s3_backend.write("dir with space/ñ.txt", b"data")
    st = await s3_backend.copy("dir with space/ñ.txt", "copy ñ.txt")
    assert st.size == 4 and await s3_backend.read("copy ñ.txt") == b"data"
    with pytest.raises(FileExistsError):
        await s3_backend.copy("dir with space/ñ.txt", "copy ñ.txt")
    with pytest.raises(IsADirectoryError):
        await s3_backend.copy("dir with space", "d2")
    with pytest.raises(FileNotFoundError):
        await s3_backend.copy("nope", "d3")


async def test_large_copy_uses_multipart_copy(make_s3_backend):
    backend = make_s3_backend(part_size=5 * MIB, multipart_copy_threshold=5 * MIB)
    data = os.urandom(11 * MIB + 123)
    await backend.write("big.bin", data)
    await backend.copy("big.bin", "big2.bin")
    st = await backend.stat("big2.bin")
    assert st.size == len(data)
    assert st.version.endswith("-3")  # a multipart ETag: three parts were copied
    assert await backend.read("big2.bin") == data






async def test_prefixes_are_isolated(make_s3_backend):
    one, two = make_s3_backend(), make_s3_backend()
    await one.write("mine.txt", b"1")
    assert await two.list("") == []
    with pytest.raises(FileNotFoundError):
        await two.read("mine.txt")


async def test_renamed_copy_gets_the_new_content_type(s3_backend, seaweedfs):
    await s3_backend.write("notes.txt", b"{}")
    await s3_backend.move("notes.txt", "notes.ipynb")
    head = seaweedfs.client().head_object(Bucket=S3_BUCKET, Key=s3_backend.prefix + "notes.ipynb")
    assert head["ContentType"] == "application/x-ipynb+json"


async def test_every_s3_call_runs_off_the_event_loop(s3_backend):
    import threading

    threads: set[str] = set()
    s3_backend.client.meta.events.register("before-call.s3", lambda **_: threads.add(threading.current_thread().name))
    await s3_backend.mkdir("d")
    await s3_backend.write("d/a.txt", b"a")
    await s3_backend.read("d/a.txt")
    [p async for p in s3_backend.read_stream("d/a.txt")]
    await s3_backend.copy("d/a.txt", "d/b.txt")
    await s3_backend.move("d", "e")
    await s3_backend.list("e")
    await s3_backend.delete("e")
    assert threads and all(name.startswith("zasper-s3") for name in threads), threads
