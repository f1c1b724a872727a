"""The Drive v3 double itself answers like Drive does where our client depends on it."""

from __future__ import annotations

import httpx
import pytest

from tests.contents.gdrive_fixture import drive_double  # noqa: F401  (fixture)
from tests.support.drive_double import DriveDouble


@pytest.fixture
def api(drive_double: DriveDouble) -> httpx.Client:
    token = drive_double.issue_token()
    with httpx.Client(base_url=drive_double.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        yield client


def test_errors_have_drives_shape(api: httpx.Client, drive_double: DriveDouble) -> None:
    r = httpx.get(drive_double.url + "drive/v3/files", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == 401
    assert "invalid_token" in r.headers["WWW-Authenticate"]
    r = api.get("drive/v3/files/nope")
    assert r.status_code == 404 and r.json()["error"]["errors"][0]["reason"] == "notFound"
    for bad in ("name contains 'x'", "'a' in parents and", "name = 'unterminated"):
        r = api.get("drive/v3/files", params={"q": bad})
        assert r.status_code == 400, bad


def test_query_fields_and_paging(api: httpx.Client, drive_double: DriveDouble) -> None:
    folder = drive_double.folder("q")
    drive_double.put_file("it's", folder, b"1")
    drive_double.put_file("other", folder, b"2")
    q = f"'{folder}' in parents and name = 'it\\'s' and trashed = false"
    r = api.get("drive/v3/files", params={"q": q, "fields": "files(id,name)"})
    assert [set(f) for f in r.json()["files"]] == [{"id", "name"}]
    r = api.get("drive/v3/files", params={"q": f"'{folder}' in parents", "pageSize": 1})
    first = r.json()
    assert set(first["files"][0]) == {"kind", "id", "name", "mimeType"}  # Drive's default fields
    r = api.get("drive/v3/files", params={"q": f"'{folder}' in parents", "pageSize": 1, "pageToken": first["nextPageToken"]})
    assert "nextPageToken" not in r.json() and r.json()["files"][0]["name"] != first["files"][0]["name"]


def test_ranges_and_resumable_sessions(api: httpx.Client, drive_double: DriveDouble) -> None:
    folder = drive_double.folder("r")
    fid = drive_double.put_file("f", folder, b"0123456789")
    r = api.get(f"drive/v3/files/{fid}", params={"alt": "media"}, headers={"Range": "bytes=2-4"})
    assert r.status_code == 206 and r.content == b"234" and r.headers["Content-Range"] == "bytes 2-4/10"
    r = api.post("upload/drive/v3/files", params={"uploadType": "resumable"}, json={"name": "up", "parents": [folder]})
    session = r.headers["Location"]
    chunk = b"x" * (256 * 1024)
    r = api.put(session, content=chunk[:1000], headers={"Content-Range": "bytes 0-999/*"})
    assert r.status_code == 400  # non-final chunks must be 256 KiB multiples
    r = api.put(session, content=chunk, headers={"Content-Range": f"bytes 0-{len(chunk) - 1}/*"})
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{len(chunk) - 1}"
    assert drive_double.find(folder, "up") is None  # not visible until the last byte
    r = api.put(session, headers={"Content-Range": "bytes */*"})
    assert r.status_code == 308 and r.headers["Range"] == f"bytes=0-{len(chunk) - 1}"
    r = api.put(session, content=b"end", headers={"Content-Range": f"bytes {len(chunk)}-{len(chunk) + 2}/{len(chunk) + 3}"})
    assert r.status_code == 200 and r.json()["name"] == "up"
    assert drive_double.content[drive_double.find(folder, "up")["id"]] == chunk + b"end"
