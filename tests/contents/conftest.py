"""Fixtures for the contents conformance suite: one `backend` per store.

`backend` is parametrized over every backend; each test gets a fresh, empty
root (the S3 and Drive fixtures give each test its own prefix/folder on a
shared server).  `cm` wraps it in the shared `ContentsManager`, as the
server does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contents.gdrive_fixture import gdrive_backend  # noqa: F401  (fixture)
from tests.contents.s3_fixture import s3_backend  # noqa: F401  (fixture)
from zasperhub.contents.base import Backend
from zasperhub.contents.local import LocalBackend
from zasperhub.contents.manager import ContentsManager

BACKENDS = ["local", "s3", "gdrive"]


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "local-root"
    root.mkdir()
    return root


@pytest.fixture
def local_backend(local_root: Path) -> LocalBackend:
    return LocalBackend(str(local_root))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture
async def cm(backend: Backend) -> AsyncIterator[ContentsManager]:
    manager = ContentsManager(backend)
    yield manager
    # Only the uploads: the backend fixture owns (and closes) the backend.
    await manager.uploads.close()
