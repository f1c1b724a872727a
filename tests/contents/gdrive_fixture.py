"""Fixture `gdrive_backend`: a real `DriveBackend` against the local Drive v3 double.

One double serves the whole test session (started on first use); every test
gets a fresh root folder and a fresh OAuth client, so tests cannot see each
other's files or tokens.  `make_gdrive_backend(**traits)` builds more
backends on the same double (other settings, a second "server" on the same
folder); `drive_double` exposes the double for seeding files and injecting
faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.drive_double import DriveDouble

_DOUBLE: list[DriveDouble] = []


def shared_double(config: pytest.Config) -> DriveDouble:
    """The session's Drive double, started on first use and stopped at session end."""
    if not _DOUBLE:
        double = DriveDouble().start()
        _DOUBLE.append(double)

        def stop() -> None:
            double.stop()
            _DOUBLE.clear()

        config.add_cleanup(stop)
    return _DOUBLE[0]


def _close(backend: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(backend.close())
    else:  # pragma: no cover - finalizers normally run outside the loop
        backend._client.close()


@pytest.fixture
def drive_double(request: pytest.FixtureRequest) -> Iterator[DriveDouble]:
    double = shared_double(request.config)
    yield double
    double.clear_faults()


class BackendFactory:
    """Builds `DriveBackend`s on the shared double for one test and closes them after it."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.double = shared_double(request.config)
        self.name = f"test-{request.node.name[:60]}"
        self.made: list[Any] = []
        self._folder: str | None = None
        self._client: dict[str, str] | None = None

    @property
    def folder(self) -> str:
        if self._folder is None:
            self._folder = self.double.folder(self.name)
        return self._folder

    @property
    def client(self) -> dict[str, str]:
        if self._client is None:
            self._client = self.double.add_client()
        return self._client

    def __call__(self, folder_id: str | None = None, client: dict[str, str] | None = None, **traits: Any) -> Any:
        from zasperhub.contents.gdrive import DriveBackend

        client = client or self.client
        settings: dict[str, Any] = dict(
            folder_id=folder_id or self.folder, root_url=self.double.url, token_uri=self.double.token_uri,
            refresh_token=client["refresh_token"], client_id=client["client_id"], client_secret=client["client_secret"],
            retry_backoff=0.01, changes_poll_interval=0.0, request_timeout=20.0, access_token="", credentials_file="")
        settings.update(traits)
        backend = DriveBackend(**settings)
        self.made.append(backend)
        return backend

    def close(self) -> None:
        for backend in self.made:
            _close(backend)
        self.double.clear_faults()


@pytest.fixture
def make_gdrive_backend(request: pytest.FixtureRequest) -> Iterator[BackendFactory]:
    """Factory: `make_gdrive_backend(folder_id=None, client=None, **traits)`; closed at teardown."""
    factory = BackendFactory(request)
    yield factory
    factory.close()


@pytest.fixture
def gdrive_backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A `DriveBackend` on a fresh, empty Drive folder of the shared double.

    Self-contained (needs no other fixture by name) so a conftest can import
    just this one.
    """
    factory = BackendFactory(request)
    yield factory()
    factory.close()
