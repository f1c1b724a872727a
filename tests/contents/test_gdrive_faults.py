"""Drive failing: bursts of 429/5xx are retried, outages become StorageUnavailable, nothing is lost."""

from __future__ import annotations

import pytest

from tests.contents.gdrive_fixture import BackendFactory, drive_double, make_gdrive_backend  # noqa: F401  (fixtures)
from tests.support.drive_double import DriveDouble
from tests.support.ports import free_port
from zasperhub.contents.base import StorageUnavailable


def _attempts(double: DriveDouble, since: int, method: str, prefix: str) -> int:
    return sum(1 for m, p, q in double.requests[since:] if m == method and p.startswith(prefix))


async def test_bursts_are_retried(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend()
    await backend.write("a.txt", b"v1")
    start = len(drive_double.requests)
    drive_double.fail_next(2, 429, when=lambda m, p: p.startswith("/upload/"))
    drive_double.fail_next(2, 503, when=lambda m, p: p.startswith("/upload/"))
    await backend.write("a.txt", b"v2")
    assert _attempts(drive_double, start, "PATCH", "/upload/") == 5
    drive_double.fail_next(3, 500)
    assert await backend.read("a.txt") == b"v2"
    drive_double.fail_next(2, 503)
    assert [s.name for s in await backend.list("")] == ["a.txt"]


async def test_outage_keeps_previous_version_then_recovers(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(max_retries=3)
    await backend.write("nb.ipynb", b"previous")
    drive_double.fail_next(1000, 503, when=lambda m, p: p.startswith("/upload/"))
    with pytest.raises(StorageUnavailable, match="503") as info:
        await backend.write("nb.ipynb", b"lost?")
    assert "gave up after 4 attempts" in str(info.value)
    drive_double.clear_faults()
    assert await backend.read("nb.ipynb") == b"previous"
    await backend.write("nb.ipynb", b"saved once back")
    assert await backend.read("nb.ipynb") == b"saved once back"
    assert [f["name"] for f in drive_double.children(make_gdrive_backend.folder)] == ["nb.ipynb"]


async def test_outage_mid_chunked_upload_resumes(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend(chunk_size=256 * 1024, max_retries=2)
    await backend.write("big.bin", b"previous")
    data = bytes(range(256)) * 4096  # 1 MiB
    upload = await backend.begin_upload("big.bin")
    await upload.append(data[: 600_000])
    drive_double.fail_next(1000, 503, when=lambda m, p: m == "PUT")
    with pytest.raises(StorageUnavailable):
        await upload.append(data[600_000:])
    with pytest.raises(StorageUnavailable):
        await upload.commit()
    assert await backend.read("big.bin") == b"previous"
    drive_double.clear_faults()
    # The session asks Drive how far it got and carries on: nothing is sent twice or lost.
    await upload.commit()
    assert await backend.read("big.bin") == data


async def test_lost_responses_do_not_duplicate(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    """Drive stored the request but the answer was lost (5xx after the fact): retries find it."""
    backend = make_gdrive_backend()
    folder = make_gdrive_backend.folder
    drive_double.fail_next(1, 500, when=lambda m, p: m == "POST" and p.startswith("/upload/"), after=True)
    await backend.write("new.txt", b"once")
    drive_double.fail_next(1, 503, when=lambda m, p: m == "POST" and p == "/drive/v3/files", after=True)
    await backend.mkdir("dir")
    drive_double.fail_next(1, 502, when=lambda m, p: p.endswith("/copy"), after=True)
    await backend.copy("new.txt", "dir/copy.txt")
    names = sorted(f["name"] for f in drive_double.children(folder))
    assert names == ["dir", "new.txt"]
    assert [f["name"] for f in drive_double.children(drive_double.find(folder, "dir")["id"])] == ["copy.txt"]
    assert await backend.read("dir/copy.txt") == b"once"


async def test_refusals_are_not_retried(make_gdrive_backend: BackendFactory, drive_double: DriveDouble) -> None:
    backend = make_gdrive_backend()
    await backend.write("a.txt", b"x")
    start = len(drive_double.requests)
    drive_double.fail_next(1, 403, when=lambda m, p: p.startswith("/upload/"))
    with pytest.raises(PermissionError, match="403"):
        await backend.write("a.txt", b"y")
    assert _attempts(drive_double, start, "PATCH", "/upload/") == 1
    assert await backend.read("a.txt") == b"x"


async def test_unreachable_drive_is_storage_unavailable(make_gdrive_backend: BackendFactory) -> None:
    backend = make_gdrive_backend(root_url=f"http://127.0.0.1:{free_port()}/", max_retries=1)
    with pytest.raises(StorageUnavailable, match="cannot reach Google Drive"):
        await backend.list("")
    await backend.close()
    with pytest.raises(StorageUnavailable, match="closed"):
        await backend.list("")
