"""Credentials of `DriveBackend`: bad tokens, refresh mid-save, hooks, service accounts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.contents.gdrive_fixture import BackendFactory, drive_double, make_gdrive_backend  # noqa: F401  (fixtures)
from tests.support.drive_double import DriveDouble


def _token_requests(double: DriveDouble, since: int) -> int:
    return sum(1 for m, p, q in double.requests[since:] if p == "/token")


async def test_bad_access_token_is_a_clear_permission_error(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(access_token="ya29.not-a-real-token", refresh_token="", client_id="", client_secret="")
    before = len(drive_double.requests)
    with pytest.raises(PermissionError, match="credentials") as info:
        await backend.write("x.txt", b"data")
    assert info.value.filename == "x.txt" or info.value.filename == ""
    assert any(p.startswith("/drive/v3/") for m, p, q in drive_double.requests[before:])
    assert drive_double.find(make_gdrive_backend.folder, "x.txt") is None


async def test_revoked_refresh_token_is_refused(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    client = dict(drive_double.add_client(), client_secret="wrong-secret")
    with pytest.raises(PermissionError, match="invalid_grant"):
        await make_gdrive_backend(client=client).list("")


async def test_expiry_mid_save_refreshes_and_lands_once(make_gdrive_backend: BackendFactory, drive_double: DriveDouble,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    backend = make_gdrive_backend(chunk_size=256 * 1024, multipart_limit=256 * 1024)
    await backend.write("nb.ipynb", b"v1")
    data = bytes(range(256)) * 4096  # 1 MiB: four chunks

    # Tokens expire between two chunks of a chunked upload.
    start = len(drive_double.requests)
    upload = await backend.begin_upload("nb.ipynb")
    await upload.append(data[: 512 * 1024])
    drive_double.expire_tokens()
    await upload.append(data[512 * 1024 :])
    await upload.commit()
    assert _token_requests(drive_double, start) == 1
    statuses = [p for m, p, q in drive_double.requests[start:] if m == "PUT"]
    assert len(statuses) == 5  # four chunks plus the one replayed after the refresh

    # Tokens expire in the middle of one resumable write (inside a single call).
    puts = [0]

    def expire_on_third_put(method: str, path: str) -> bool:
        if method == "PUT":
            puts[0] += 1
            if puts[0] == 3:
                drive_double.expire_tokens()
        return False

    drive_double.fail_next(1, 503, when=expire_on_third_put)
    start = len(drive_double.requests)
    await backend.write("new.bin", data[::-1])
    assert _token_requests(drive_double, start) == 1
    assert await backend.read("nb.ipynb") == data and await backend.read("new.bin") == data[::-1]
    names = [f["name"] for f in drive_double.children(make_gdrive_backend.folder)]
    assert sorted(names) == ["nb.ipynb", "new.bin"]  # each save landed exactly once

    # The refresh replayed the request; no transport error or timeout was needed.
    assert not [r for r in caplog.records if r.name == "zasperhub.contents.gdrive_api"]

    # And a small (multipart) save right after an expiry.
    drive_double.expire_tokens()
    await backend.write("small.txt", b"s")
    assert [f["name"] for f in drive_double.children(make_gdrive_backend.folder)].count("small.txt") == 1


async def test_refresh_hook_sync_and_async(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    calls: list[str] = []

    def sync_hook() -> str:
        calls.append("sync")
        return drive_double.issue_token()

    backend = make_gdrive_backend(credentials_refresher=sync_hook, refresh_token="", client_id="", client_secret="")
    await backend.write("a.txt", b"a")
    drive_double.expire_tokens()
    assert await backend.read("a.txt") == b"a"
    assert calls == ["sync", "sync"]

    loop = asyncio.get_running_loop()

    async def async_hook() -> dict:
        assert asyncio.get_running_loop() is loop  # run on the app's loop, e.g. to call the hub API
        calls.append("async")
        await asyncio.sleep(0)
        return {"access_token": drive_double.issue_token(), "expires_in": 3600}

    backend = make_gdrive_backend(credentials_refresher=async_hook, refresh_token="", client_id="", client_secret="")
    # Concurrent calls that all hit the expired token refresh once.
    await backend.write("b.txt", b"b")
    drive_double.expire_tokens()
    results = await asyncio.gather(*(backend.stat("b.txt") for _ in range(4)))
    assert {r.size for r in results} == {1}
    assert calls[2:] == ["async", "async"]

    # A short-lived token (the hub says "ask again in a second") is used, then renewed before it expires.
    short: list[str] = []

    def short_hook() -> dict:
        short.append(drive_double.issue_token())
        return {"access_token": short[-1], "expires_in": 1}

    backend = make_gdrive_backend(credentials_refresher=short_hook, refresh_token="", client_id="", client_secret="")
    await backend.write("c.txt", b"c")
    assert len(short) == 1
    await asyncio.sleep(1.2)
    start = len(drive_double.requests)
    assert await backend.read("c.txt") == b"c"
    assert len(short) == 2  # asked again proactively …
    assert not [r for r in drive_double.requests[start:] if r[1] == "/token"]  # … through the hook only

    def broken_hook() -> str:
        return ""

    with pytest.raises(PermissionError, match="no access token"):
        await make_gdrive_backend(credentials_refresher=broken_hook, refresh_token="").list("")


async def test_service_account_key_file(make_gdrive_backend: BackendFactory, drive_double: DriveDouble, tmp_path: Path) -> None:
    key = drive_double.add_service_account()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(key))
    start = len(drive_double.requests)
    backend = make_gdrive_backend(credentials_file=str(key_file), refresh_token="", client_id="", client_secret="")
    await backend.write("by-sa.txt", b"robot")
    assert await backend.read("by-sa.txt") == b"robot"
    assert _token_requests(drive_double, start) == 1

    forged = dict(key, client_email="someone-else@double.iam.gserviceaccount.com")
    key_file.write_text(json.dumps(forged))
    with pytest.raises(PermissionError, match="invalid_grant"):
        await make_gdrive_backend(credentials_file=str(key_file), refresh_token="").list("")
    key_file.write_text("{not json")
    with pytest.raises(ValueError, match="credentials file"):
        make_gdrive_backend(credentials_file=str(key_file), refresh_token="")
