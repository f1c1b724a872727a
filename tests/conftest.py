"""Shared fixtures: a real server on a free loopback port with a temp root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

#: CI runs bounded versions of stress tests.
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture
def root_dir(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def server(root_dir: Path) -> Iterator[ServerProcess]:
    """A fresh `zasperhub` on 127.0.0.1 serving `root_dir` with token auth."""
    srv = ServerProcess(root_dir).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One token-mode server shared by a test module (tests keep to their own folders)."""
    root = tmp_path_factory.mktemp("module") / "root"
    root.mkdir()
    srv = ServerProcess(root).start()
    yield srv
    srv.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator:
    """Factory: `start_server(root, *args, env=...)` with cleanup at teardown."""
    started: list[ServerProcess] = []

    def start(root: Path | None = None, *args: str, **kwargs) -> ServerProcess:
        if root is None:
            root = tmp_path / f"root{len(started)}"
            root.mkdir()
        srv = ServerProcess(root, *args, **kwargs).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
