"""Fixtures for the S3 backend against a real SeaweedFS.

- `seaweedfs`: one `weed mini` per test session (credentials enforced) with
  the bucket `S3_BUCKET` and an extra identity `LIMITED` confined to the
  prefix ``limited/``.
- `s3_backend`: an `S3Backend` on that bucket under a fresh unique prefix per
  test, so tests never see each other's files; closed afterwards.
- `make_s3_backend`: factory for tests that need other settings or
  credentials (`make_s3_backend(secret_access_key="wrong")`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Callable

import pytest

from tests.support.seaweed import Identity, SeaweedFS

S3_BUCKET = "zasper-tests"
#: An identity that may only touch keys below `limited/` of `S3_BUCKET`.
LIMITED = Identity.create(
    "limited", [f"{a}:{S3_BUCKET}/limited/*" for a in ("Read", "Write", "List")]
)


_SERVER_KEY = pytest.StashKey[SeaweedFS]()


def shared_seaweedfs(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> SeaweedFS:
    """The session's SeaweedFS, started on first use and stopped when the session ends.

    Kept on the pytest config (not only in a named fixture) so that importing
    just `s3_backend` into a conftest is enough to use it.
    """
    server = config.stash.get(_SERVER_KEY, None)
    if server is None:
        server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"), identities=[LIMITED])
        server.start()
        config.add_cleanup(server.stop)
        server.create_bucket(S3_BUCKET)
        config.stash[_SERVER_KEY] = server
    return server


@pytest.fixture(scope="session")
def seaweedfs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SeaweedFS:
    """A SeaweedFS S3 server for the whole session, with bucket `S3_BUCKET`."""
    return shared_seaweedfs(request.config, tmp_path_factory)


def _backend(server: SeaweedFS, prefix: str | None = None, **settings: Any) -> Any:
    from zasperhub.contents.s3 import S3Backend

    options: dict[str, Any] = {
        "endpoint_url": server.endpoint,
        "region_name": "us-east-1",
        "access_key_id": server.access_key,
        "secret_access_key": server.secret_key,
        # Fail fast in tests: an outage must surface in well under a second.
        "connect_timeout": 1.0,
        "read_timeout": 10.0,
        "max_attempts": 1,
    }
    options.update(settings)
    return S3Backend(bucket=options.pop("bucket", S3_BUCKET), prefix=prefix or f"t-{uuid.uuid4().hex[:12]}", **options)


@pytest.fixture
async def make_s3_backend(seaweedfs: SeaweedFS) -> AsyncIterator[Callable[..., Any]]:
    """Factory of `S3Backend`s on the session server; each gets its own prefix unless given."""
    made: list[Any] = []

    def make(prefix: str | None = None, **settings: Any) -> Any:
        backend = _backend(seaweedfs, prefix, **settings)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def s3_backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """An `S3Backend` rooted at a fresh, empty prefix of the session's bucket."""
    backend = _backend(shared_seaweedfs(request.config, tmp_path_factory))
    yield backend
    await backend.close()
