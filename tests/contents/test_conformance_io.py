"""Conformance: chunked uploads (incl. 50 MB), conflicts, concurrency, checkpoints — every backend."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import pytest

from zasperhub.contents.base import Backend, PreconditionFailed
from zasperhub.contents.manager import ContentsManager

CHUNK = 1 << 20  # JupyterLab's upload chunk size


def chunk_model(data: bytes, n: int) -> dict:
    return {"type": "file", "format": "base64", "content": base64.b64encode(data).decode(), "chunk": n}


async def upload(cm: ContentsManager, path: str, data: bytes, chunk_size: int = CHUNK) -> dict:
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    model: dict = {}
    for i, piece in enumerate(pieces, start=1):
        model = await cm.save(chunk_model(piece, -1 if i == len(pieces) and i > 1 else i), path)
    if len(pieces) == 1:  # a one-piece upload still ends with -1
        model = await cm.save(chunk_model(b"", -1), path)
    return model


async def stream_digest(backend: Backend, path: str) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    async for piece in backend.read_stream(path):
        h.update(piece)
        n += len(piece)
    return h.hexdigest(), n


async def test_50mb_chunked_upload(cm: ContentsManager, backend: Backend) -> None:
    size = 50 * 1024 * 1024
    # Pseudo-random but cheap: a 1 MiB random block, varied per chunk.
    block = os.urandom(CHUNK)
    data = b"".join(i.to_bytes(4, "big") + block[4:] for i in range(size // CHUNK))
    model = await upload(cm, "big file.bin", data)
    assert model["size"] == size and model["type"] == "file"
    digest, n = await stream_digest(backend, "big file.bin")
    assert n == size and digest == hashlib.sha256(data).hexdigest()
    meta = await cm.get("big file.bin", content=False, require_hash=True)
    assert meta["hash"] == hashlib.sha256(data).hexdigest() and meta["size"] == size


async def test_chunks_invisible_until_last_and_replace_atomically(cm: ContentsManager) -> None:
    await cm.save({"type": "file", "format": "text", "content": "old"}, "f.txt")
    await cm.save(chunk_model(b"new-1|", 1), "f.txt")
    await cm.save(chunk_model(b"new-2|", 2), "f.txt")
    assert (await cm.get("f.txt"))["content"] == "old"
    assert [c["name"] for c in (await cm.get(""))["content"]] == ["f.txt"]  # no temp files listed
    await cm.save(chunk_model(b"end", -1), "f.txt")
    assert (await cm.get("f.txt"))["content"] == "new-1|new-2|end"


async def test_chunk_errors(cm: ContentsManager) -> None:
    with pytest.raises(ValueError, match="chunk 1"):
        await cm.save(chunk_model(b"x", 2), "a.bin")
    with pytest.raises(ValueError, match="chunk 1"):
        await cm.save(chunk_model(b"x", -1), "a.bin")
    for bad in (0, -2, "1", True, 1.5):
        with pytest.raises(ValueError, match="chunk"):
            await cm.save(chunk_model(b"x", bad), "a.bin")
    with pytest.raises(ValueError, match="not supported"):
        await cm.save({"type": "notebook", "content": {}, "chunk": 1}, "a.ipynb")
    # Out of order: the upload is cancelled and nothing appears.
    await cm.save(chunk_model(b"1", 1), "b.bin")
    with pytest.raises(ValueError, match="out of order"):
        await cm.save(chunk_model(b"3", 3), "b.bin")
    with pytest.raises(ValueError, match="chunk 1"):
        await cm.save(chunk_model(b"x", -1), "b.bin")
    # Missing parent directory fails at chunk 1.
    with pytest.raises(FileNotFoundError):
        await cm.save(chunk_model(b"x", 1), "no-dir/c.bin")
    assert (await cm.get(""))["content"] == []


async def test_restarted_upload_replaces_unfinished_one(cm: ContentsManager) -> None:
    await cm.save(chunk_model(b"abandoned", 1), "r.bin")
    await cm.save(chunk_model(b"fresh-", 1), "r.bin")
    await cm.save(chunk_model(b"start", -1), "r.bin")
    assert (await cm.get("r.bin", format="text"))["content"] == "fresh-start"


async def test_stale_hash_conflict(cm: ContentsManager) -> None:
    first = await cm.save({"type": "file", "format": "text", "content": "v1"}, "doc.txt")
    seen = first["hash"]
    assert seen == (await cm.get("doc.txt", content=False, require_hash=True))["hash"]
    # Someone else saves a newer version…
    await cm.save({"type": "file", "format": "text", "content": "v2 by other"}, "doc.txt")
    # …so a save based on the old hash is refused and loses nothing.
    with pytest.raises(PreconditionFailed):
        await cm.save({"type": "file", "format": "text", "content": "v2 by me"}, "doc.txt", expected_hash=seen)
    assert (await cm.get("doc.txt"))["content"] == "v2 by other"
    current = (await cm.get("doc.txt", require_hash=True))["hash"]
    ok = await cm.save({"type": "file", "format": "text", "content": "v3"}, "doc.txt", expected_hash=current)
    assert ok["hash"] == hashlib.sha256(b"v3").hexdigest()
    # Notebooks and deleted files too.
    await cm.save({"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}, "n.ipynb")
    with pytest.raises(PreconditionFailed):
        await cm.save({"type": "notebook", "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}, "n.ipynb", expected_hash="0" * 64)
    await cm.delete("doc.txt")
    with pytest.raises(PreconditionFailed):
        await cm.save({"type": "file", "format": "text", "content": "x"}, "doc.txt", expected_hash=current)


async def test_concurrent_saves(cm: ContentsManager, backend: Backend) -> None:
    # Different files at once: all land intact.
    await asyncio.gather(
        *(cm.save({"type": "file", "format": "text", "content": f"file {i} " * 1000}, f"f{i}.txt") for i in range(12))
    )
    for i in range(12):
        assert (await cm.get(f"f{i}.txt"))["content"] == f"file {i} " * 1000
    # The same file from several writers (two managers, as two servers would):
    # the result is exactly one of the versions, never a mix.
    other = ContentsManager(backend)
    versions = [f"version {i} ".encode() * (2000 + i) for i in range(8)]
    await asyncio.gather(
        *(
            (cm if i % 2 else other).save({"type": "file", "format": "text", "content": v.decode()}, "same.txt")
            for i, v in enumerate(versions)
        )
    )
    assert await backend.read("same.txt") in versions


async def test_concurrent_conditional_saves_one_wins(cm: ContentsManager) -> None:
    base = await cm.save({"type": "file", "format": "text", "content": "base"}, "c.txt")
    results = await asyncio.gather(
        *(cm.save({"type": "file", "format": "text", "content": f"w{i}"}, "c.txt", expected_hash=base["hash"]) for i in range(5)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1
    assert all(isinstance(r, PreconditionFailed) for r in results if not isinstance(r, dict))
    assert (await cm.get("c.txt"))["content"] in {f"w{i}" for i in range(5)}


async def test_checkpoints_lifecycle(cm: ContentsManager, backend: Backend) -> None:
    await cm.mkdir("d")
    await cm.save({"type": "file", "format": "text", "content": "one"}, "d/f.txt")
    assert await cm.list_checkpoints("d/f.txt") == []  # plain files: only on request
    cp = await cm.create_checkpoint("d/f.txt")
    assert cp["id"] == "checkpoint" and cp["last_modified"].endswith("Z")
    assert await cm.list_checkpoints("d/f.txt") == [cp]
    assert await backend.read("d/.ipynb_checkpoints/f-checkpoint.txt") == b"one"  # same store, Jupyter's layout
    await cm.save({"type": "file", "format": "text", "content": "two"}, "d/f.txt")
    await cm.restore_checkpoint("checkpoint", "d/f.txt")
    assert (await cm.get("d/f.txt"))["content"] == "one"
    with pytest.raises(FileNotFoundError):
        await cm.restore_checkpoint("other-id", "d/f.txt")
    await cm.delete_checkpoint("checkpoint", "d/f.txt")
    assert await cm.list_checkpoints("d/f.txt") == []
    with pytest.raises(FileNotFoundError):
        await cm.delete_checkpoint("checkpoint", "d/f.txt")
    with pytest.raises(FileNotFoundError):
        await cm.restore_checkpoint("checkpoint", "d/f.txt")
    with pytest.raises(FileNotFoundError):
        await cm.create_checkpoint("d/missing.txt")
    with pytest.raises(ValueError):
        await cm.create_checkpoint("d")
    assert [c["name"] for c in (await cm.get("d"))["content"]] == ["f.txt"]


async def test_notebook_checkpoint_follows_rename(cm: ContentsManager) -> None:
    nb = {"cells": [], "metadata": {"v": 1}, "nbformat": 4, "nbformat_minor": 5}
    await cm.save({"type": "notebook", "content": nb}, "n.ipynb")
    assert len(await cm.list_checkpoints("n.ipynb")) == 1  # created on first save
    await cm.save({"type": "notebook", "content": {**nb, "metadata": {"v": 2}}}, "n.ipynb")
    await cm.mkdir("moved")
    await cm.rename("n.ipynb", "moved/m.ipynb")
    assert await cm.list_checkpoints("n.ipynb") == []
    assert len(await cm.list_checkpoints("moved/m.ipynb")) == 1
    await cm.restore_checkpoint("checkpoint", "moved/m.ipynb")
    assert (await cm.get("moved/m.ipynb"))["content"]["metadata"] == {"v": 1}


async def test_abandoned_uploads_expire_and_close_aborts(cm: ContentsManager) -> None:
    cm.upload_idle_timeout = 0.0
    await cm.save(chunk_model(b"left behind", 1), "idle.bin")
    await asyncio.sleep(0.01)
    with pytest.raises(ValueError, match="chunk 1"):
        await cm.save(chunk_model(b"too late", 2), "idle.bin")
    cm.upload_idle_timeout = 3600.0
    await cm.save(chunk_model(b"open", 1), "open.bin")
    await cm.uploads.close()
    with pytest.raises(ValueError, match="chunk 1"):
        await cm.save(chunk_model(b"", -1), "open.bin")
    assert (await cm.get(""))["content"] == []
