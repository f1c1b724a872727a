"""`/files/{path}`: streamed downloads with the right headers, on the real server."""

from __future__ import annotations

import hashlib
import os
import uuid
from urllib.parse import quote

import httpx
import pytest

from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def srv(module_server: ServerProcess) -> ServerProcess:
    return module_server


@pytest.fixture
def folder(srv: ServerProcess) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    (srv.root_dir / name).mkdir()
    return name


def test_large_file_streams_intact(srv: ServerProcess, folder: str) -> None:
    data = os.urandom(12 * 1024 * 1024 + 123)
    (srv.root_dir / folder / "big.bin").write_bytes(data)
    h, total, pieces = hashlib.sha256(), 0, 0
    with httpx.stream("GET", f"{srv.url}/files/{folder}/big.bin", headers=srv.headers, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Length"] == str(len(data))
        for piece in r.iter_raw():
            h.update(piece)
            total += len(piece)
            pieces += 1
    assert total == len(data) and h.hexdigest() == hashlib.sha256(data).hexdigest() and pieces > 1


@pytest.mark.parametrize(
    ("name", "data", "content_type"),
    [
        ("notes.txt", "héllo".encode(), "text/plain; charset=UTF-8"),
        ("nb.ipynb", b"{}", "application/x-ipynb+json"),
        ("img.png", b"\x89PNG\r\n\x1a\n", "image/png"),
        ("noext", b"plain words", "text/plain; charset=UTF-8"),
        ("noext.bin2", b"\xff\xfe\x00binary", "application/octet-stream"),
        ("page.html", b"<b>x</b>", "text/html; charset=UTF-8"),
    ],
)
def test_content_types(srv: ServerProcess, folder: str, name: str, data: bytes, content_type: str) -> None:
    (srv.root_dir / folder / name).write_bytes(data)
    r = httpx.get(f"{srv.url}/files/{folder}/{name}", headers=srv.headers)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Type"] == content_type
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert "Content-Disposition" not in r.headers


def test_download_disposition_and_head(srv: ServerProcess, folder: str) -> None:
    name = "Résumé données.csv"
    (srv.root_dir / folder / name).write_bytes(b"a,b\n")
    url = f"{srv.url}/files/{folder}/{quote(name)}"
    r = httpx.get(url + "?download=1", headers=srv.headers)
    assert r.status_code == 200 and r.content == b"a,b\n"
    disposition = r.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''R%C3%A9sum%C3%A9%20donn%C3%A9es.csv" in disposition
    head = httpx.head(url, headers=srv.headers)
    assert head.status_code == 200 and head.headers["Content-Length"] == "4" and head.content == b""


def test_errors(srv: ServerProcess, folder: str) -> None:
    assert httpx.get(f"{srv.url}/files/{folder}/missing.txt", headers=srv.headers).status_code == 404
    assert httpx.get(f"{srv.url}/files/{folder}", headers=srv.headers).status_code == 400
    (srv.root_dir / folder / ".hidden").write_text("h")
    assert httpx.get(f"{srv.url}/files/{folder}/.hidden", headers=srv.headers).status_code == 404
    assert httpx.get(f"{srv.url}/files/{folder}/missing.txt").status_code == 401


def test_client_leaving_mid_download_is_harmless(srv: ServerProcess, folder: str) -> None:
    (srv.root_dir / folder / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    with httpx.stream("GET", f"{srv.url}/files/{folder}/big.bin", headers=srv.headers, timeout=30) as r:
        next(r.iter_raw())  # take one piece, then hang up
    r = httpx.get(f"{srv.url}/api/contents/{folder}", headers=srv.headers)
    assert r.status_code == 200 and [c["name"] for c in r.json()["content"]] == ["big.bin"]
    assert "Traceback" not in srv.log()
