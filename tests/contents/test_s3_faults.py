"""S3 backend faults: the store goes away before or in the middle of a save.

Each case checks the same three things: the caller gets `StorageUnavailable`
with the reason, the previous version of the file is intact, and the save
succeeds once the store is back.  SeaweedFS is restarted on the same data
directory and ports; mid-transfer breaks come from a byte-level proxy.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faultproxy import FaultProxy
from tests.support.seaweed import SeaweedFS
from zasperhub.contents.base import StorageUnavailable

pytestmark = pytest.mark.s3
MIB = 1 << 20
BUCKET = "faults"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this module's own, since these tests stop and restart it."""
    with SeaweedFS(tmp_path_factory.mktemp("seaweed-faults")) as server:
        server.create_bucket(BUCKET)
        yield server


@pytest.fixture
async def backend_for(store: SeaweedFS, request: pytest.FixtureRequest):
    from zasperhub.contents.s3 import S3Backend

    made = []

    def make(endpoint: str | None = None, **settings):
        options = {"connect_timeout": 1.0, "read_timeout": 5.0, "max_attempts": 1, **settings}
        backend = S3Backend(
            bucket=BUCKET, prefix=request.node.name[:40], endpoint_url=endpoint or store.endpoint, region_name="us-east-1",
            access_key_id=store.access_key, secret_access_key=store.secret_key, **options,
        )
        made.append(backend)
        return backend

    yield make
    if not store.running:
        store.start()
    for backend in made:
        await backend.close()


async def test_store_stopped_before_save(store, backend_for):
    backend = backend_for()
    await backend.write("nb.ipynb", b'{"v": 1}')
    store.stop()
    try:
        for attempt in (backend.write("nb.ipynb", b'{"v": 2}'), backend.read("nb.ipynb"), backend.list(""), backend.stat("nb.ipynb")):
            with pytest.raises(StorageUnavailable) as info:
                await attempt
            assert "unreachable" in str(info.value) and store.endpoint.split("//")[1] in str(info.value)
    finally:
        store.start()
    assert await backend.read("nb.ipynb") == b'{"v": 1}'
    await backend.write("nb.ipynb", b'{"v": 2}')
    assert await backend.read("nb.ipynb") == b'{"v": 2}'


async def test_connection_broken_mid_put(store, backend_for):
    with FaultProxy(("127.0.0.1", store.s3_port)) as proxy:
        backend = backend_for(proxy.endpoint)
        old = os.urandom(64 * 1024)
        await backend.write("data.bin", old)
        proxy.cut_after(512 * 1024)
        new = os.urandom(4 * MIB)
        with pytest.raises(StorageUnavailable):
            await backend.write("data.bin", new)
        assert proxy.cuts >= 1
        proxy.heal()
        assert await backend.read("data.bin") == old
        await backend.write("data.bin", new)
        assert await backend.read("data.bin") == new


async def test_store_stopped_mid_multipart_upload(store, backend_for):
    backend = backend_for(part_size=5 * MIB)
    await backend.write("big.bin", b"previous")
    upload = await backend.begin_upload("big.bin")
    await upload.append(os.urandom(5 * MIB))  # part 1 is in the store
    store.stop()
    try:
        with pytest.raises(StorageUnavailable):
            await upload.append(os.urandom(5 * MIB))
        with pytest.raises(ValueError):
            await upload.commit()  # the failed upload was aborted, not half-committed
    finally:
        store.start()
    assert await backend.read("big.bin") == b"previous"
    retry = await backend.begin_upload("big.bin")
    data = os.urandom(11 * MIB)
    for start in range(0, len(data), 3 * MIB):
        await retry.append(data[start : start + 3 * MIB])
    await retry.commit()
    assert await backend.read("big.bin") == data


async def test_failed_folder_move_loses_nothing(store, backend_for):
    with FaultProxy(("127.0.0.1", store.s3_port)) as proxy:
        backend = backend_for(proxy.endpoint)
        await backend.mkdir("src")
        for i in range(20):
            await backend.write(f"src/f{i}.txt", str(i).encode())
        # Break every connection after a little traffic: some copies fail mid-way.
        proxy.cut_after(600)
        with pytest.raises(OSError):
            await backend.move("src", "dst")
        proxy.heal()
        assert sorted(e.name for e in await backend.list("src")) == sorted(f"f{i}.txt" for i in range(20))
        for i in range(20):
            assert await backend.read(f"src/f{i}.txt") == str(i).encode()
        await backend.move("src", "dst")
        assert len(await backend.list("dst")) == 20


def test_rest_save_while_store_is_down_is_503(store: SeaweedFS, tmp_path: Path) -> None:
    """Through the real server: a clear 503 with the reason, old version intact, save works after."""
    import httpx

    from tests.support.server import ServerProcess

    root = tmp_path / "root"
    root.mkdir()
    env = {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key, "AWS_REGION": "us-east-1"}
    server = ServerProcess(
        root, f"--contents=s3://{BUCKET}/rest", f"--S3Backend.endpoint_url={store.endpoint}",
        "--S3Backend.connect_timeout=1", "--S3Backend.max_attempts=1", env=env,
    ).start()
    try:
        url = server.url + "/api/contents/saved.txt"
        model = {"type": "file", "format": "text", "content": "version 1"}
        with httpx.Client(headers=server.headers, timeout=30) as http:
            assert http.put(url, json=model).status_code == 201
            store.stop()
            try:
                down = http.put(url, json={**model, "content": "version 2"})
                assert down.status_code == 503, down.text
                assert "unreachable" in down.json()["message"] and "S3" in down.json()["message"]
                assert http.get(url).status_code == 503
            finally:
                store.start()
            assert http.get(url).json()["content"] == "version 1"
            assert http.put(url, json={**model, "content": "version 2"}).status_code == 200
            assert http.get(url).json()["content"] == "version 2"
    finally:
        server.stop()
        print(server.log()[-3000:])


async def test_store_that_never_answers_times_out_quickly(backend_for):
    import socket

    # Accepts connections (the kernel completes the handshake) but never replies.
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        backend = backend_for(f"http://127.0.0.1:{silent.getsockname()[1]}", read_timeout=1.0)
        with pytest.raises(StorageUnavailable, match="unreachable"):
            await backend.read("anything.txt")
