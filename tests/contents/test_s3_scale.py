"""S3 backend: multipart chunked uploads, a 5,000-object folder, renaming a folder of many files."""

from __future__ import annotations

import concurrent.futures
import os

import pytest

from tests.conftest import IN_CI
from tests.contents.s3_fixture import S3_BUCKET, make_s3_backend, s3_backend, seaweedfs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.s3
MIB = 1 << 20


def bulk_put(client, keys: list[str], body: bytes = b"x") -> None:
    """Create many small objects quickly (bounded thread pool, raw client)."""
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=S3_BUCKET, Key=k, Body=body), keys))


def count_calls(backend, operation: str) -> list[int]:
    """Count requests of one S3 operation the backend's client actually sends."""
    calls = [0]

    def hook(**_kwargs):
        calls[0] += 1

    backend.client.meta.events.register(f"before-call.s3.{operation}", hook)
    return calls


async def test_chunked_upload_streams_into_multipart(make_s3_backend, seaweedfs):
    backend = make_s3_backend(part_size=5 * MIB)
    await backend.write("nb.ipynb", b"old")
    pieces = [os.urandom(2 * MIB) for _ in range(6)] + [b"tail"]
    upload = await backend.begin_upload("nb.ipynb")
    for piece in pieces:
        await upload.append(piece)
    # Parts are already in the store, but nothing is visible until commit.
    assert await backend.read("nb.ipynb") == b"old"
    pending = seaweedfs.client().list_multipart_uploads(Bucket=S3_BUCKET, Prefix=backend.prefix).get("Uploads", [])
    assert [u["Key"] for u in pending] == [backend.prefix + "nb.ipynb"]
    st = await upload.commit()
    data = b"".join(pieces)
    assert st.size == len(data) and st.version.endswith("-3")  # 6 MiB, 6 MiB, 0.x MiB parts
    assert await backend.read("nb.ipynb") == data
    assert not seaweedfs.client().list_multipart_uploads(Bucket=S3_BUCKET, Prefix=backend.prefix).get("Uploads")


async def test_small_chunked_upload_is_one_put(s3_backend):
    upload = await s3_backend.begin_upload("small.txt")
    await upload.append(b"a")
    await upload.append(b"b")
    with pytest.raises(FileNotFoundError):
        await s3_backend.stat("small.txt")
    st = await upload.commit()
    assert st.size == 2 and "-" not in st.version and await s3_backend.read("small.txt") == b"ab"


async def test_aborted_upload_leaves_nothing(make_s3_backend, seaweedfs):
    backend = make_s3_backend(part_size=5 * MIB)
    upload = await backend.begin_upload("gone.bin")
    await upload.append(os.urandom(6 * MIB))
    await upload.abort()
    await upload.abort()  # safe twice
    with pytest.raises(FileNotFoundError):
        await backend.stat("gone.bin")
    assert not seaweedfs.client().list_multipart_uploads(Bucket=S3_BUCKET, Prefix=backend.prefix).get("Uploads")
    with pytest.raises(ValueError):
        await upload.append(b"late")


async def test_upload_targets_are_checked_up_front(s3_backend):
    await s3_backend.mkdir("d")
    with pytest.raises(IsADirectoryError):
        await s3_backend.begin_upload("d")
    with pytest.raises(FileNotFoundError):
        await s3_backend.begin_upload("missing/x.bin")


async def test_listing_5000_objects_paginates(s3_backend, seaweedfs):
    count = 5000
    base = s3_backend.prefix + "big/"
    keys = [f"{base}f{i:05d}.txt" for i in range(count)] + [f"{base}sub{i}/x" for i in range(3)]
    bulk_put(seaweedfs.client(), keys)
    lists = count_calls(s3_backend, "ListObjectsV2")
    entries = await s3_backend.list("big")
    files = sorted(e.name for e in entries if e.kind == "file")
    dirs = sorted(e.name for e in entries if e.kind == "directory")
    assert files == [f"f{i:05d}.txt" for i in range(count)]
    assert dirs == ["sub0", "sub1", "sub2"]
    assert all(e.size == 1 and e.version and e.mtime for e in entries if e.kind == "file")
    assert lists[0] >= count // 1000  # followed the continuation tokens page by page


async def test_rename_folder_with_many_files(s3_backend, seaweedfs):
    count = 120 if IN_CI else 400
    await s3_backend.mkdir("proj")
    await s3_backend.mkdir("proj/empty")
    keys = [f"{s3_backend.prefix}proj/d{i % 7}/n{i}.ipynb" for i in range(count)]
    bulk_put(seaweedfs.client(), keys, body=b"{}")
    await s3_backend.move("proj", "renamed")
    with pytest.raises(FileNotFoundError):
        await s3_backend.stat("proj")
    moved = []
    for d in await s3_backend.list("renamed"):
        if d.kind == "directory" and d.name != "empty":
            moved += [f"{d.name}/{e.name}" for e in await s3_backend.list(f"renamed/{d.name}")]
    assert sorted(moved) == sorted(f"d{i % 7}/n{i}.ipynb" for i in range(count))
    assert await s3_backend.list("renamed/empty") == []
    assert [e.name for e in await s3_backend.list("")] == ["renamed"]
