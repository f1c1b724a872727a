"""`/api/contents` against the real server on local disk: shapes, status codes, bad input."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.server import ServerProcess


@pytest.fixture(scope="module")
def srv(module_server: ServerProcess) -> ServerProcess:
    """One server for the module; each test works in its own folder."""
    return module_server


@pytest.fixture
def client(srv: ServerProcess) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


@pytest.fixture
def folder(srv: ServerProcess) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    (srv.root_dir / name).mkdir()
    return name


def api(path: str) -> str:
    return "/api/contents/" + quote(path)


def raw_request(srv: ServerProcess, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Send `path` exactly as given (httpx would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=srv.headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_get_shapes_and_query_arguments(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    (srv.root_dir / folder / "a.txt").write_text("hello")
    # Clients append a bare cache-buster key.
    r = client.get(api(folder) + "?content=1&hash=0&1795272737598")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    listing = r.json()
    assert listing["type"] == "directory" and listing["format"] == "json"
    assert [(c["name"], c["path"], c["content"]) for c in listing["content"]] == [("a.txt", f"{folder}/a.txt", None)]
    model = client.get(api(f"{folder}/a.txt"), params={"hash": "1"}).json()
    assert model["content"] == "hello" and model["hash"] == hashlib.sha256(b"hello").hexdigest()
    assert model["hash_algorithm"] == "sha256" and model["last_modified"].endswith("Z")
    meta = client.get(api(f"{folder}/a.txt"), params={"content": "0"}).json()
    assert meta["content"] is None and meta["format"] is None and meta["size"] == 5
    b64 = client.get(api(f"{folder}/a.txt"), params={"format": "base64"}).json()
    assert base64.b64decode(b64["content"]) == b"hello"
    for bad in ({"content": "2"}, {"hash": "yes"}, {"format": "xml"}):
        r = client.get(api(f"{folder}/a.txt"), params=bad)
        assert r.status_code == 400 and r.json()["message"]
    assert client.get(api(f"{folder}/a.txt"), params={"type": "directory"}).status_code == 400
    r = client.get(api(f"{folder}/missing.txt"))
    assert r.status_code == 404 and "missing.txt" in r.json()["message"]


def test_new_untitled_and_copy(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    r = client.post(api(folder), content=b'{"type":"notebook"}', headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert r.status_code == 201 and r.json()["name"] == "Untitled.ipynb"
    assert r.headers["Location"] == f"/api/contents/{folder}/Untitled.ipynb"
    assert client.post(api(folder), json={"type": "notebook"}).json()["name"] == "Untitled1.ipynb"
    assert client.post(api(folder), json={"type": "directory"}).json()["name"] == "Untitled Folder"
    assert client.post(api(folder), json={"type": "file", "ext": ".txt"}).json()["name"] == "untitled.txt"
    assert client.post(api(folder)).json()["name"] == "untitled"
    r = client.post(api(folder), json={"copy_from": f"{folder}/Untitled.ipynb"})
    assert r.status_code == 201 and r.json()["name"] == "Untitled-Copy1.ipynb"
    assert r.headers["Location"] == f"/api/contents/{folder}/Untitled-Copy1.ipynb"
    r = client.post(api(f"{folder}/Untitled.ipynb"), json={"type": "notebook"})
    assert r.status_code == 400 and "PUT" in r.json()["message"]
    assert client.post(api(f"{folder}/nope"), json={"type": "notebook"}).status_code == 404
    assert client.post(api(folder), json={"copy_from": f"{folder}/missing.ipynb"}).status_code == 404
    assert json.loads((srv.root_dir / folder / "Untitled.ipynb").read_text())["nbformat"] == 4


def test_put_create_save_and_errors(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    path = f"{folder}/nb.ipynb"
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    r = client.put(api(path), json={"type": "notebook", "content": nb})
    assert r.status_code == 201 and r.headers["Location"] == f"/api/contents/{folder}/nb.ipynb"
    assert r.json()["content"] is None and r.json()["type"] == "notebook"
    r = client.put(api(path), content=json.dumps({"type": "notebook", "content": nb}).encode(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 200
    assert client.put(api(path), json={"copy_from": "x"}).status_code == 400
    r = client.put(api(f"{folder}/x.txt"), content=b"{not json")
    assert r.status_code == 400 and "Invalid JSON" in r.json()["message"]
    assert client.put(api(f"{folder}/x.txt"), json=[1, 2]).status_code == 400
    assert client.put(api(f"{folder}/x.txt"), json={"type": "file", "content": "x"}).status_code == 400  # no format
    assert client.put(api(f"{folder}/no-dir/x.txt"), json={"type": "file", "format": "text", "content": "x"}).status_code == 404
    r = client.put(api(f"{folder}/newdir"), json={"type": "directory"})
    assert r.status_code == 201 and (srv.root_dir / folder / "newdir").is_dir()
    assert not (srv.root_dir / folder / "x.txt").exists()


def test_save_conflict_on_stale_hash(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    path = f"{folder}/doc.txt"
    first = client.put(api(path), json={"type": "file", "format": "text", "content": "v1"}).json()
    (srv.root_dir / folder / "doc.txt").write_text("changed on disk")
    r = client.put(api(path), json={"type": "file", "format": "text", "content": "mine"}, headers={"If-Match": f'"{first["hash"]}"'})
    assert r.status_code == 409 and "stale" in r.json()["message"]
    r = client.put(api(path), json={"type": "file", "format": "text", "content": "mine", "expected_hash": first["hash"]})
    assert r.status_code == 409
    assert (srv.root_dir / folder / "doc.txt").read_text() == "changed on disk"
    current = client.get(api(path), params={"content": "0", "hash": "1"}).json()["hash"]
    r = client.put(api(path), json={"type": "file", "format": "text", "content": "mine"}, headers={"If-Match": current})
    assert r.status_code == 200 and (srv.root_dir / folder / "doc.txt").read_text() == "mine"


def test_rename_and_delete(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    client.put(api(f"{folder}/a.txt"), json={"type": "file", "format": "text", "content": "a"})
    client.put(api(f"{folder}/b.txt"), json={"type": "file", "format": "text", "content": "b"})
    r = client.patch(api(f"{folder}/a.txt"), json={"path": f"{folder}/c d.txt"})
    assert r.status_code == 200 and r.json()["name"] == "c d.txt"
    assert r.headers["Location"] == f"/api/contents/{folder}/c%20d.txt"
    r = client.patch(api(f"{folder}/c d.txt"), json={"path": f"{folder}/b.txt"})
    assert r.status_code == 409
    assert client.patch(api(f"{folder}/b.txt")).status_code == 400
    assert client.patch(api(f"{folder}/b.txt"), json={"path": "../escape.txt"}).status_code == 400
    r = client.patch(api(folder), json={"path": f"{folder}-renamed"})
    assert r.status_code == 200 and (srv.root_dir / f"{folder}-renamed" / "b.txt").exists()
    assert client.delete(api(f"{folder}-renamed/b.txt")).status_code == 204
    assert client.delete(api(f"{folder}-renamed/b.txt")).status_code == 404
    r = client.delete(api(f"{folder}-renamed"))
    assert r.status_code == 204 and not (srv.root_dir / f"{folder}-renamed").exists()
    assert client.delete(api("")).status_code == 400


def test_checkpoints_endpoints(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    path = f"{folder}/f.txt"
    client.put(api(path), json={"type": "file", "format": "text", "content": "one"})
    assert client.get(api(path) + "/checkpoints").json() == []
    r = client.post(api(path) + "/checkpoints")
    assert r.status_code == 201 and r.json()["id"] == "checkpoint"
    assert r.headers["Location"] == f"/api/contents/{folder}/f.txt/checkpoints/checkpoint"
    assert client.get(api(path) + "/checkpoints").json() == [r.json()]
    client.put(api(path), json={"type": "file", "format": "text", "content": "two"})
    assert client.post(api(path) + "/checkpoints/checkpoint").status_code == 204
    assert (srv.root_dir / folder / "f.txt").read_text() == "one"
    assert client.post(api(path) + "/checkpoints/nope").status_code == 404
    assert client.delete(api(path) + "/checkpoints/checkpoint").status_code == 204
    assert client.delete(api(path) + "/checkpoints/checkpoint").status_code == 404
    assert client.post(api(f"{folder}/missing.txt") + "/checkpoints").status_code == 404


def test_chunked_upload(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    path = f"{folder}/up.bin"
    pieces = [bytes([i]) * 300_000 for i in range(3)]
    for n, piece in zip((1, 2, -1), pieces, strict=True):
        model = {"type": "file", "format": "base64", "chunk": n, "content": base64.b64encode(piece).decode(), "path": path}
        r = client.put(api(path), json=model)
        assert r.status_code in (200, 201), r.text
        if n != -1:
            assert not (srv.root_dir / folder / "up.bin").exists()
    assert r.json()["size"] == 900_000
    assert (srv.root_dir / folder / "up.bin").read_bytes() == b"".join(pieces)
    r = client.put(api(f"{folder}/other.bin"), json={"type": "file", "format": "base64", "chunk": 2, "content": ""})
    assert r.status_code == 400 and "chunk 1" in r.json()["message"]


def test_hidden_files(client: httpx.Client, srv: ServerProcess, folder: str) -> None:
    (srv.root_dir / folder / ".secret").write_text("s")
    assert client.get(api(folder)).json()["content"] == []
    assert client.get(api(f"{folder}/.secret")).status_code == 404
    assert client.put(api(f"{folder}/.secret"), json={"type": "file", "format": "text", "content": "x"}).status_code == 400
    assert client.delete(api(f"{folder}/.secret")).status_code == 400
    assert client.get(f"/files/{folder}/.secret").status_code == 404
    assert (srv.root_dir / folder / ".secret").read_text() == "s"


@pytest.mark.parametrize(
    "path",
    [
        "/api/contents/../x",
        "/api/contents/%2e%2e/x",
        "/api/contents/a/%2E%2E/%2E%2E/etc/passwd",
        "/api/contents//etc/passwd",
        "/api/contents/%2Fetc%2Fpasswd",
        "/api/contents/a%5C..%5Cb",
        "/api/contents/x%00y",
        "/api/contents/../x/checkpoints",
        "/files/../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files//etc/passwd",
    ],
)
def test_traversal_attempts_are_400(srv: ServerProcess, path: str) -> None:
    if path.endswith("/checkpoints"):
        methods: tuple[str, ...] = ("GET", "POST")
    elif path.startswith("/api"):
        methods = ("GET", "PUT", "PATCH", "POST", "DELETE")
    else:
        methods = ("GET", "HEAD")
    for method in methods:
        body = b'{"type":"file","format":"text","content":"x","path":"ok.txt"}' if method in ("PUT", "PATCH") else None
        status, payload = raw_request(srv, method, path, body)
        assert status == 400, (method, path, payload)
        if method != "HEAD":
            assert json.loads(payload)["message"]
    outside = srv.root_dir.parent
    assert not any((outside / name).exists() for name in ("x", "ok.txt", "b", "y")), list(outside.iterdir())


def test_auth_required(srv: ServerProcess) -> None:
    assert httpx.get(srv.url + "/api/contents").status_code == 401
    assert httpx.get(srv.url + "/files/x.txt").status_code == 401
    assert httpx.put(srv.url + "/api/contents/x.txt", json={"type": "file", "format": "text", "content": "x"}).status_code == 401
    assert not (srv.root_dir / "x.txt").exists()


def test_notebooks_redirect(client: httpx.Client, folder: str) -> None:
    r = client.get(f"/api/notebooks/{folder}", follow_redirects=False)
    assert r.status_code in (301, 302) and r.headers["Location"] == f"/api/contents/{folder}"


def test_allow_hidden_via_command_line(start_server) -> None:  # type: ignore[no-untyped-def]
    server = start_server(None, "--ContentsManager.allow_hidden=True")
    (server.root_dir / ".dot").write_text("d")
    with server.client() as c:
        assert c.get("/api/contents/.dot").json()["content"] == "d"
        assert [x["name"] for x in c.get("/api/contents").json()["content"]] == [".dot"]


def test_bad_contents_url_is_a_one_line_error(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "zasperhub.platform.cli", "--port=0", f"--root-dir={tmp_path}", "--no-browser", "--contents=ftp://host/x"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "No contents backend for ftp://" in proc.stderr and "Traceback" not in proc.stderr
