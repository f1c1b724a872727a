"""Drive-specific behaviour of `DriveBackend` against the local Drive v3 double."""

from __future__ import annotations

import subprocess
import sys

import pytest
from traitlets.config import Application, Config

from tests.contents.gdrive_fixture import BackendFactory, drive_double, make_gdrive_backend  # noqa: F401  (fixtures)
from tests.support.drive_double import DriveDouble
from zasperhub.contents.registry import ContentsConfigError, open_backend


def test_import_is_lazy() -> None:
    code = ("import sys, zasperhub.contents.gdrive, zasperhub.contents.registry; "
            "bad = [m for m in sys.modules if m.startswith(('googleapiclient', 'google.auth', 'httplib2'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_opened_by_url_with_config_and_env(drive_double: DriveDouble, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    client = drive_double.add_client()
    folder = drive_double.folder("from-url")
    drive_double.put_file("hello.txt", folder, b"hi")
    # Secrets from the environment, endpoint from the app's config: nothing secret on a command line.
    monkeypatch.setenv("ZASPERHUB_GDRIVE_REFRESH_TOKEN", client["refresh_token"])
    monkeypatch.setenv("ZASPERHUB_GDRIVE_CLIENT_ID", client["client_id"])
    monkeypatch.setenv("ZASPERHUB_GDRIVE_CLIENT_SECRET", client["client_secret"])
    monkeypatch.setenv("ZASPERHUB_GDRIVE_TOKEN_URI", drive_double.token_uri)
    app = Application(config=Config({"DriveBackend": {"root_url": drive_double.url, "retry_backoff": 0.01}}))
    backend = open_backend(f"gdrive://{folder}", root_dir=str(tmp_path), parent=app)
    try:
        assert backend.describe() == f"gdrive://{folder}"
        assert client["client_secret"] not in backend.describe()
        assert [s.name for s in await backend.list("")] == ["hello.txt"]
        assert await backend.read("hello.txt") == b"hi"
    finally:
        await backend.close()


@pytest.mark.parametrize("url", ["gdrive://", "gdrive://abc/sub/dir", "gdrive://abc?x=1"])
def test_bad_urls_are_refused(url: str, tmp_path) -> None:
    with pytest.raises(ContentsConfigError, match="gdrive://<folder-id>"):
        open_backend(url, root_dir=str(tmp_path))


def test_missing_credentials_say_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("ZASPERHUB_GDRIVE_CREDENTIALS", "GOOGLE_APPLICATION_CREDENTIALS", "ZASPERHUB_GDRIVE_ACCESS_TOKEN",
                "ZASPERHUB_GDRIVE_REFRESH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ContentsConfigError, match="ZASPERHUB_GDRIVE_ACCESS_TOKEN"):
        open_backend("gdrive://folder", root_dir=str(tmp_path))


def test_chunk_size_must_suit_drive(make_gdrive_backend: BackendFactory) -> None:
    with pytest.raises(Exception, match="256 KiB"):
        make_gdrive_backend(chunk_size=100_000)


async def test_root_must_be_a_folder(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    file_id = drive_double.put_file("not-a-folder.txt", "root", b"x")
    with pytest.raises(NotADirectoryError):
        await make_gdrive_backend(folder_id=file_id).stat("")
    with pytest.raises(FileNotFoundError):
        await make_gdrive_backend(folder_id="no-such-folder-id").list("")


@pytest.mark.parametrize("name", ["it's.txt", "back\\slash.txt", "a' or name = 'x", "ünï cødé ✓.ipynb", "  spaced  .txt"])
async def test_names_are_escaped_in_queries(make_gdrive_backend: BackendFactory, drive_double: DriveDouble, name: str) -> None:
    backend = make_gdrive_backend()
    await backend.write("decoy.txt", b"decoy")
    await backend.mkdir(f"dir {name}")
    await backend.write(f"dir {name}/{name}", b"payload")
    assert await backend.read(f"dir {name}/{name}") == b"payload"
    assert [s.name for s in await backend.list(f"dir {name}")] == [name]
    stored = drive_double.find(make_gdrive_backend.folder, f"dir {name}")
    assert stored is not None and drive_double.find(stored["id"], name) is not None


async def test_drive_duplicates_and_unaddressable_names(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    folder = make_gdrive_backend.folder
    drive_double.put_file("twin.txt", folder, b"older")
    drive_double.put_file("twin.txt", folder, b"newer")
    drive_double.put_file("has/slash.txt", folder, b"?")
    backend = make_gdrive_backend()
    listing = await backend.list("")
    assert [s.name for s in listing] == ["twin.txt"]  # one entry per name; "/" names left out
    assert await backend.read("twin.txt") == b"older"  # the same pick as the listing (the oldest)
    assert listing[0].size == len(b"older")


async def test_google_docs_are_listed_read_only(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    drive_double.put_file("Plan", make_gdrive_backend.folder, b"", mime="application/vnd.google-apps.document")
    backend = make_gdrive_backend()
    (doc,) = await backend.list("")
    assert doc.kind == "file" and doc.writable is False
    with pytest.raises(PermissionError, match="fileNotDownloadable"):
        await backend.read("Plan")


async def test_delete_goes_to_trash_by_default(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend()
    await backend.mkdir("d")
    await backend.write("d/f.txt", b"x")
    trashed_id = drive_double.find(make_gdrive_backend.folder, "d")["id"]
    await backend.delete("d")
    assert drive_double.files[trashed_id]["trashed"] is True  # recoverable from Drive's trash
    with pytest.raises(FileNotFoundError):
        await backend.stat("d/f.txt")
    await backend.mkdir("d")  # the name is free again
    assert await backend.list("d") == []

    permanent = make_gdrive_backend(delete_to_trash=False)
    await permanent.write("g.txt", b"y")
    gone_id = drive_double.find(make_gdrive_backend.folder, "g.txt")["id"]
    await permanent.delete("g.txt")
    assert gone_id not in drive_double.files


async def test_listing_pages_past_1000_entries(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend()
    await backend.mkdir("many")
    many = drive_double.find(make_gdrive_backend.folder, "many")["id"]
    for i in range(1005):  # bounded: one page of 1000 plus a second one
        drive_double.put_file(f"f{i:04}.txt", many, b"")
    before = len(drive_double.requests)
    listing = await backend.list("many")
    assert sorted(s.name for s in listing) == [f"f{i:04}.txt" for i in range(1005)]
    pages = [q for m, p, q in drive_double.requests[before:] if p == "/drive/v3/files" and "in parents and trashed" in q.get("q", "")]
    assert len(pages) == 2 and pages[0]["pageSize"] == "1000" and pages[1]["pageToken"]
    assert "nextPageToken" in pages[0]["fields"] and "md5Checksum" in pages[0]["fields"]


async def test_large_write_uses_a_resumable_session(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(multipart_limit=1 << 20, chunk_size=256 * 1024)
    data = bytes(range(256)) * (3 * 4096) + b"tail"  # 3 MiB + 4 bytes
    before = len(drive_double.requests)
    stat = await backend.write("big.bin", data)
    assert stat.size == len(data)
    sent = drive_double.requests[before:]
    assert any(p == "/upload/drive/v3/files" and q.get("uploadType") == "resumable" for m, p, q in sent)
    assert sum(1 for m, p, q in sent if m == "PUT") == 13  # 12 full chunks and the tail
    assert await backend.read("big.bin") == data
    # Replacing it in place keeps the Drive id (files.update with media).
    file_id = drive_double.find(make_gdrive_backend.folder, "big.bin")["id"]
    await backend.write("big.bin", data[::-1])
    assert drive_double.find(make_gdrive_backend.folder, "big.bin")["id"] == file_id
    pieces = [p async for p in backend.read_stream("big.bin", chunk_size=256 * 1024)]
    assert len(pieces) == 13 and all(len(p) <= 256 * 1024 for p in pieces)
    assert b"".join(pieces) == data[::-1]


async def test_chunked_upload_is_invisible_until_commit(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(chunk_size=256 * 1024)
    await backend.write("old.bin", b"previous")
    data = bytes(range(256)) * 5000  # 1.28 MB in odd-sized pieces
    upload = await backend.begin_upload("old.bin")
    for start in range(0, len(data), 300_001):
        await upload.append(data[start : start + 300_001])
    assert await backend.read("old.bin") == b"previous"  # chunks are out, but not the file
    stat = await upload.commit()
    assert stat.size == len(data) and await backend.read("old.bin") == data

    fresh = await backend.begin_upload("new.bin")
    await fresh.append(data)
    with pytest.raises(FileNotFoundError):
        await backend.stat("new.bin")
    await fresh.abort()
    await fresh.abort()  # idempotent
    assert sorted(s.name for s in await backend.list("")) == ["old.bin"]
    empty = await backend.begin_upload("empty.bin")
    assert (await empty.commit()).size == 0 and await backend.read("empty.bin") == b""
    assert [p async for p in backend.read_stream("empty.bin")] == [b""]


async def test_paths_never_leave_the_root(make_gdrive_backend: BackendFactory) -> None:
    backend = make_gdrive_backend()
    await backend.mkdir("a")
    for bad in ("../x", "a/../../x", "a/./b"):
        with pytest.raises(PermissionError):
            await backend.write(bad, b"x")
    with pytest.raises(PermissionError):
        await backend.delete("")
    with pytest.raises(OSError, match="into itself"):
        await backend.move("a", "a/b")
