"""Conformance: the Jupyter contents model through `ContentsManager`, on every backend.

Reading, writing, formats, notebooks, untitled names, copy, rename, delete,
directories, hidden files and path validation.
"""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from zasperhub.contents.base import Backend
from zasperhub.contents.manager import ContentsManager

KEYS = {"name", "path", "type", "writable", "created", "last_modified", "size", "mimetype", "content", "format", "hash", "hash_algorithm"}


def nb(*sources: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
            for i, s in enumerate(sources)
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


async def test_empty_root(cm: ContentsManager) -> None:
    root = await cm.get("")
    assert root["type"] == "directory" and root["path"] == "" and root["content"] == [] and root["format"] == "json"
    assert KEYS <= set(root)
    assert root["last_modified"].endswith("Z")


async def test_text_file_roundtrip(cm: ContentsManager) -> None:
    saved = await cm.new({"type": "file", "format": "text", "content": "héllo\nwörld\n"}, "a.txt")
    assert saved["content"] is None and saved["type"] == "file" and saved["name"] == "a.txt"
    model = await cm.get("a.txt", require_hash=True)
    assert model["content"] == "héllo\nwörld\n" and model["format"] == "text"
    assert model["mimetype"] == "text/plain"
    assert model["hash"] == hashlib.sha256("héllo\nwörld\n".encode()).hexdigest()
    assert model["hash_algorithm"] == "sha256"
    assert model["size"] == len("héllo\nwörld\n".encode())
    assert KEYS <= set(model)
    # content=0: metadata only (hash still available)
    meta = await cm.get("a.txt", content=False, require_hash=True)
    assert meta["content"] is None and meta["format"] is None and meta["hash"] == model["hash"]


async def test_binary_file_is_base64(cm: ContentsManager) -> None:
    data = bytes(range(256)) * 3
    await cm.save({"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}, "blob.bin")
    model = await cm.get("blob.bin")
    assert model["format"] == "base64" and base64.b64decode(model["content"]) == data
    assert model["mimetype"] == "application/octet-stream"
    with pytest.raises(ValueError, match="UTF-8"):
        await cm.get("blob.bin", format="text")
    # A text file can be asked for as base64.
    await cm.save({"type": "file", "format": "text", "content": "abc"}, "t.txt")
    assert (await cm.get("t.txt", format="base64"))["content"] == base64.b64encode(b"abc").decode()


async def test_notebook_roundtrip_keeps_multiline(cm: ContentsManager) -> None:
    content = nb("print(1)\nprint(2)\n", "x = 'ü'")
    saved = await cm.save({"type": "notebook", "content": content}, "n.ipynb")
    assert saved["type"] == "notebook" and "message" not in saved
    model = await cm.get("n.ipynb")
    assert model["format"] == "json" and model["mimetype"] is None
    assert model["content"]["cells"][0]["source"] == "print(1)\nprint(2)\n"
    assert model["content"]["cells"][1]["source"] == "x = 'ü'"
    # Stored the way nbformat writes it: lines split, sorted keys.
    raw = (await cm.get("n.ipynb", type="file", format="text"))["content"]
    assert '"source": [\n    "print(1)\\n",\n    "print(2)\\n"\n   ]' in raw and "ü" in raw


async def test_invalid_notebook_is_saved_with_message(cm: ContentsManager) -> None:
    bad = nb("1")
    bad["cells"][0]["cell_type"] = "bogus"
    saved = await cm.save({"type": "notebook", "content": bad}, "bad.ipynb")
    assert "validation failed" in saved["message"]
    assert (await cm.get("bad.ipynb"))["content"]["cells"][0]["cell_type"] == "bogus"


async def test_unreadable_notebook_is_400_and_file_intact(cm: ContentsManager) -> None:
    await cm.save({"type": "file", "format": "text", "content": "{not json"}, "broken.ipynb")
    with pytest.raises(ValueError, match="Unreadable Notebook"):
        await cm.get("broken.ipynb")
    assert (await cm.get("broken.ipynb", type="file"))["content"] == "{not json"


async def test_bad_models_are_refused(cm: ContentsManager) -> None:
    with pytest.raises(ValueError, match="type"):
        await cm.save({"content": "x"}, "a.txt")
    with pytest.raises(ValueError, match="content"):
        await cm.save({"type": "file", "format": "text"}, "a.txt")
    with pytest.raises(ValueError, match="format"):
        await cm.save({"type": "file", "content": "x"}, "a.txt")
    with pytest.raises(ValueError, match="Encoding error"):
        await cm.save({"type": "file", "format": "base64", "content": "@@not base64@@"}, "a.txt")
    with pytest.raises(ValueError, match="JSON object"):
        await cm.save({"type": "notebook", "content": [1, 2]}, "a.ipynb")
    with pytest.raises(ValueError):
        await cm.save({"type": "notebook", "content": {"cells": []}}, "a.ipynb")
    assert (await cm.get(""))["content"] == []  # nothing was written


async def test_type_mismatch_and_missing(cm: ContentsManager) -> None:
    await cm.mkdir("d")
    await cm.save({"type": "file", "format": "text", "content": ""}, "f.txt")
    with pytest.raises(ValueError, match="is a directory"):
        await cm.get("d", type="file")
    with pytest.raises(ValueError, match="not a directory"):
        await cm.get("f.txt", type="directory")
    with pytest.raises(FileNotFoundError):
        await cm.get("nope.txt")
    with pytest.raises(FileNotFoundError):
        await cm.get("d/nope/deeper.txt")
    with pytest.raises(FileNotFoundError):
        await cm.save({"type": "file", "format": "text", "content": "x"}, "missing-dir/a.txt")


async def test_untitled_names(cm: ContentsManager) -> None:
    names = [(await cm.new_untitled("", type="notebook"))["name"] for _ in range(3)]
    assert names == ["Untitled.ipynb", "Untitled1.ipynb", "Untitled2.ipynb"]
    assert (await cm.new_untitled("", ext=".ipynb"))["type"] == "notebook"
    assert [(await cm.new_untitled("", type="file", ext=".txt"))["name"] for _ in range(2)] == ["untitled.txt", "untitled1.txt"]
    assert (await cm.new_untitled("", type="file"))["name"] == "untitled"
    folders = [(await cm.new_untitled("", type="directory"))["name"] for _ in range(2)]
    assert folders == ["Untitled Folder", "Untitled Folder 1"]
    model = await cm.get("Untitled.ipynb")
    assert model["content"]["nbformat"] == 4 and model["content"]["cells"] == []
    assert (await cm.get("untitled.txt"))["content"] == ""
    assert (await cm.get("Untitled Folder 1"))["content"] == []
    with pytest.raises(FileNotFoundError):
        await cm.new_untitled("no-such-dir", type="notebook")
    with pytest.raises(ValueError):
        await cm.new_untitled("", type="widget")


async def test_unicode_spaces_and_nested_folders(cm: ContentsManager) -> None:
    path = "Über Ordner/日本語 フォルダ/deep er/ñ o t e 📓.ipynb"
    parts = path.split("/")
    for i in range(1, len(parts)):
        await cm.mkdir("/".join(parts[:i]))
    await cm.save({"type": "notebook", "content": nb("'📓'")}, path)
    model = await cm.get(path)
    assert model["name"] == "ñ o t e 📓.ipynb" and model["path"] == path
    assert model["content"]["cells"][0]["source"] == "'📓'"
    listing = await cm.get("Über Ordner/日本語 フォルダ")
    assert [(c["name"], c["type"], c["path"]) for c in listing["content"]] == [("deep er", "directory", "Über Ordner/日本語 フォルダ/deep er")]
    leaf = await cm.get("Über Ordner/日本語 フォルダ/deep er")
    assert [c["name"] for c in leaf["content"]] == ["ñ o t e 📓.ipynb"]  # checkpoints hidden
    assert all(c["content"] is None for c in leaf["content"])


async def test_empty_directories_persist(cm: ContentsManager, backend: Backend) -> None:
    await cm.mkdir("empty")
    await cm.mkdir("empty/inner")
    assert [c["name"] for c in (await cm.get(""))["content"]] == ["empty"]
    assert (await cm.get("empty/inner"))["content"] == []
    # A second manager over the same store sees them too (nothing cached).
    other = ContentsManager(backend)
    assert (await other.get("empty"))["content"][0]["name"] == "inner"
    with pytest.raises(FileExistsError):
        await cm.mkdir("empty")
    # Saving a directory model that exists is fine (Jupyter semantics).
    assert (await cm.save({"type": "directory"}, "empty"))["type"] == "directory"


async def test_listing_has_children_types(cm: ContentsManager) -> None:
    await cm.mkdir("sub")
    await cm.save({"type": "notebook", "content": nb()}, "n.ipynb")
    await cm.save({"type": "file", "format": "text", "content": "x"}, "f.py")
    await cm.save({"type": "file", "format": "text", "content": "x"}, "junk.pyc")
    kids = {c["name"]: c for c in (await cm.get(""))["content"]}
    assert set(kids) == {"sub", "n.ipynb", "f.py"}  # hide_globs, hidden checkpoints
    assert kids["sub"]["type"] == "directory" and kids["n.ipynb"]["type"] == "notebook" and kids["f.py"]["type"] == "file"
    assert kids["f.py"]["size"] == 1 and kids["f.py"]["mimetype"] == "text/x-python"


async def test_rename_file_and_folder(cm: ContentsManager) -> None:
    await cm.mkdir("src")
    await cm.mkdir("src/inner")
    await cm.save({"type": "file", "format": "text", "content": "one"}, "src/inner/a.txt")
    await cm.save({"type": "notebook", "content": nb("1")}, "src/n.ipynb")
    renamed = await cm.rename("src", "dst dir")
    assert renamed["path"] == "dst dir" and renamed["type"] == "directory"
    assert (await cm.get("dst dir/inner/a.txt"))["content"] == "one"
    assert (await cm.get("dst dir/n.ipynb"))["content"]["cells"][0]["source"] == "1"
    assert not await cm.exists("src")
    moved = await cm.update({"path": "dst dir/inner/b.txt"}, "dst dir/inner/a.txt")
    assert moved["name"] == "b.txt" and moved["content"] is None
    assert [c["name"] for c in (await cm.get("dst dir/inner"))["content"]] == ["b.txt"]


async def test_rename_conflicts_and_errors(cm: ContentsManager) -> None:
    await cm.save({"type": "file", "format": "text", "content": "a"}, "a.txt")
    await cm.save({"type": "file", "format": "text", "content": "b"}, "b.txt")
    await cm.mkdir("d")
    with pytest.raises(FileExistsError):
        await cm.rename("a.txt", "b.txt")
    assert (await cm.get("a.txt"))["content"] == "a" and (await cm.get("b.txt"))["content"] == "b"
    with pytest.raises(FileNotFoundError):
        await cm.rename("missing.txt", "c.txt")
    with pytest.raises(FileNotFoundError):
        await cm.rename("a.txt", "no-dir/a.txt")
    with pytest.raises(ValueError, match="into itself"):
        await cm.rename("d", "d/e")
    with pytest.raises(ValueError):
        await cm.rename("", "x")
    assert (await cm.rename("a.txt", "a.txt"))["path"] == "a.txt"


async def test_copy_names(cm: ContentsManager) -> None:
    await cm.save({"type": "notebook", "content": nb("orig")}, "nb.ipynb")
    first = await cm.copy("nb.ipynb")
    second = await cm.copy("nb.ipynb", "")
    again = await cm.copy("nb-Copy1.ipynb")
    assert [first["name"], second["name"], again["name"]] == ["nb-Copy1.ipynb", "nb-Copy2.ipynb", "nb-Copy3.ipynb"]
    assert (await cm.get("nb-Copy2.ipynb"))["content"]["cells"][0]["source"] == "orig"
    await cm.mkdir("other")
    into = await cm.copy("nb.ipynb", "other")
    assert into["path"] == "other/nb.ipynb"  # no clash there: keeps its name
    await cm.save({"type": "file", "format": "text", "content": "t"}, "data.tar.gz")
    assert (await cm.copy("data.tar.gz"))["name"] == "data-Copy1.tar.gz"
    named = await cm.copy("nb.ipynb", "other/named.ipynb")
    assert named["path"] == "other/named.ipynb"
    with pytest.raises(FileNotFoundError):
        await cm.copy("missing.ipynb")
    with pytest.raises(FileNotFoundError):
        await cm.copy("nb.ipynb", "no/such/dir.ipynb")


async def test_delete_file_and_tree(cm: ContentsManager) -> None:
    await cm.mkdir("tree")
    await cm.mkdir("tree/sub")
    await cm.save({"type": "file", "format": "text", "content": "x"}, "tree/sub/f.txt")
    await cm.save({"type": "notebook", "content": nb()}, "tree/n.ipynb")
    await cm.delete("tree/n.ipynb")
    assert await cm.list_checkpoints("tree/n.ipynb") == []  # its checkpoint went too
    await cm.delete("tree")
    assert (await cm.get(""))["content"] == []
    with pytest.raises(FileNotFoundError):
        await cm.delete("tree")
    with pytest.raises(ValueError):
        await cm.delete("")


async def test_hidden_files_policy(cm: ContentsManager, backend: Backend) -> None:
    await backend.write(".secret", b"s")
    await backend.mkdir(".hid")
    await backend.write(".hid/x.txt", b"x")
    assert (await cm.get(""))["content"] == []
    for path in (".secret", ".hid/x.txt", ".hid"):
        with pytest.raises(FileNotFoundError):
            await cm.get(path)
    with pytest.raises(ValueError, match="hidden"):
        await cm.save({"type": "file", "format": "text", "content": "y"}, ".secret")
    with pytest.raises(ValueError, match="hidden"):
        await cm.delete(".hid")
    with pytest.raises(ValueError, match="hidden"):
        await cm.rename(".secret", "visible")
    await cm.save({"type": "file", "format": "text", "content": "v"}, "visible.txt")
    with pytest.raises(ValueError, match="hidden"):
        await cm.rename("visible.txt", ".now-hidden")
    with pytest.raises(ValueError, match="hidden"):
        await cm.copy(".secret", "")
    assert await backend.read(".secret") == b"s"  # nothing was touched

    permissive = ContentsManager(backend, allow_hidden=True)
    names = {c["name"] for c in (await permissive.get(""))["content"]}
    assert {".secret", ".hid", "visible.txt"} <= names
    assert (await permissive.get(".hid/x.txt"))["content"] == "x"
    await permissive.save({"type": "file", "format": "text", "content": "new"}, ".secret")
    assert await backend.read(".secret") == b"new"


class RecordingBackend(Backend):
    """Delegates to a real backend and records which primitives were called."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.calls: list[str] = []

    async def stat(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("stat")
        return await self.inner.stat(path)

    async def list(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("list")
        return await self.inner.list(path)

    async def read(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("read")
        return await self.inner.read(path)

    async def write(self, path, data, *, if_version=None, exclusive=False):  # type: ignore[no-untyped-def]
        self.calls.append("write")
        return await self.inner.write(path, data, if_version=if_version, exclusive=exclusive)

    async def delete(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("delete")
        await self.inner.delete(path)

    async def move(self, src, dst):  # type: ignore[no-untyped-def]
        self.calls.append("move")
        await self.inner.move(src, dst)

    async def mkdir(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("mkdir")
        await self.inner.mkdir(path)

    async def begin_upload(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("begin_upload")
        return await self.inner.begin_upload(path)

    def local_dir(self, path):  # type: ignore[no-untyped-def]
        self.calls.append("local_dir")
        return self.inner.local_dir(path)


BAD_PATHS = ["../x", "a/../../x", "//etc/passwd", "a\\..\\b", "a/./b", "a//b", "nul\0byte", "C:/Windows", "..", "a/.."]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_traversal_refused_before_backend(backend: Backend, bad: str) -> None:
    spy = RecordingBackend(backend)
    cm = ContentsManager(spy, allow_hidden=True)
    operations = [
        cm.get(bad),
        cm.save({"type": "file", "format": "text", "content": "x"}, bad),
        cm.new(None, bad),
        cm.new_untitled(bad),
        cm.delete(bad),
        cm.rename(bad, "ok.txt"),
        cm.copy(bad),
        cm.mkdir(bad),
        cm.create_checkpoint(bad),
        cm.list_checkpoints(bad),
        cm.restore_checkpoint("checkpoint", bad),
        cm.open_stream(bad),
    ]
    for op in operations:
        with pytest.raises(ValueError):
            await op
    assert spy.calls == []
    assert cm.local_dir(bad) is None


async def test_multi_megabyte_files_in_one_request(cm: ContentsManager) -> None:
    blob = os.urandom(3 * 1024 * 1024)
    text = "ligne ü\n" * 400_000
    await cm.save({"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()}, "big.bin")
    saved = await cm.save({"type": "file", "format": "text", "content": text}, "big.txt")
    assert saved["hash"] == hashlib.sha256(text.encode()).hexdigest()
    got = await cm.get("big.bin", require_hash=True)
    assert base64.b64decode(got["content"]) == blob and got["hash"] == hashlib.sha256(blob).hexdigest()
    assert (await cm.get("big.txt"))["content"] == text


@pytest.mark.parametrize("tail", [b"\r", b"\r\n", b"\n", b"\n\r", b"--"])
async def test_binary_content_ending_in_line_break_bytes(cm: ContentsManager, tail: bytes) -> None:
    # A body's last bytes sit right before a multipart delimiter in some
    # backends' uploads; none of them may be taken for part of it.
    blob = os.urandom(1000) + tail
    await cm.save({"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()}, "tail.bin")
    got = await cm.get("tail.bin")
    assert base64.b64decode(got["content"]) == blob


async def test_copy_folders(cm: ContentsManager) -> None:
    await cm.mkdir("proj")
    await cm.mkdir("proj/empty")
    await cm.mkdir("proj/src")
    await cm.save({"type": "file", "format": "text", "content": "code"}, "proj/src/m.py")
    await cm.save({"type": "notebook", "content": nb("1")}, "proj/n.ipynb")
    first = await cm.copy("proj")
    assert first["path"] == "proj-Copy1" and first["type"] == "directory"
    assert (await cm.get("proj-Copy1/src/m.py"))["content"] == "code"
    assert (await cm.get("proj-Copy1/empty"))["content"] == []
    assert (await cm.get("proj-Copy1/n.ipynb"))["content"]["cells"][0]["source"] == "1"
    assert (await cm.copy("proj", ""))["path"] == "proj-Copy2"
    await cm.mkdir("dest")
    assert (await cm.copy("proj", "dest"))["path"] == "dest/proj"
    with pytest.raises(ValueError, match="into itself"):
        await cm.copy("proj", "proj/src")
    with pytest.raises(ValueError):
        await cm.copy("")
    small = ContentsManager(cm.backend, max_copy_folder_size_mb=0)
    with pytest.raises(ValueError, match="too large"):
        await small.copy("proj")
    assert sorted(c["name"] for c in (await cm.get(""))["content"]) == ["dest", "proj", "proj-Copy1", "proj-Copy2"]
