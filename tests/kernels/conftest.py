"""Fixtures for kernel tests: one real server per module, kernels started over REST."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.server import ServerProcess


def make_test_kernelspec(data_dir: Path) -> Path:
    """Kernelspecs `zasper-test` (ipykernel, message interrupt mode, a symlink pointing outside) and `zasper-broken`."""
    spec_dir = data_dir / "kernels" / "zasper-test"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Zasper test kernel",
        "language": "python",
        "interrupt_mode": "message",
        "env": {"ZASPER_TEST_SPEC_ENV": "from-spec"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    (spec_dir / "kernel.js").write_text("// test resource\n")
    broken = data_dir / "kernels" / "zasper-broken"
    broken.mkdir(parents=True, exist_ok=True)
    (broken / "kernel.json").write_text(
        json.dumps({"argv": [str(data_dir / "no-such-interpreter"), "-f", "{connection_file}"], "display_name": "Broken", "language": "python"})
    )
    secret = data_dir / "outside-secret.txt"
    secret.write_text("secret outside the kernelspec")
    link = spec_dir / "escape.txt"
    if not link.exists():
        link.symlink_to(secret)
    return spec_dir


def start_kernel_server(base: Path, *args: str) -> ServerProcess:
    """A server whose kernels write connection files into `base/runtime`."""
    root = base / "root"
    root.mkdir(parents=True, exist_ok=True)
    runtime = base / "runtime"
    runtime.mkdir(exist_ok=True)
    data = base / "data"
    make_test_kernelspec(data)
    env = {"JUPYTER_RUNTIME_DIR": str(runtime), "JUPYTER_PATH": str(data)}
    srv = ServerProcess(root, *args, env=env)
    srv.runtime_dir = runtime  # type: ignore[attr-defined]
    return srv.start()


@pytest.fixture(scope="module")
def kserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server shared by the tests of one module, with small caps so tests can reach them."""
    srv = start_kernel_server(
        tmp_path_factory.mktemp("kernels"),
        "--KernelRegistry.max_message_bytes=1048576",
        "--KernelRegistry.client_buffer_bytes=2097152",
        "--KernelRegistry.replay_buffer_bytes=262144",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def http(kserver: ServerProcess) -> Iterator[httpx.Client]:
    with kserver.client() as client:
        yield client


def kernel_processes(server_pid: int) -> list[psutil.Process]:
    """The server's ipykernel descendants; one exiting (or a zombie not reaped yet) meanwhile is skipped."""
    found = []
    for proc in psutil.Process(server_pid).children(recursive=True):
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                found.append(proc)
        except psutil.Error:  # gone, or a zombie: not a running kernel
            pass
    return found


def start_kernel(http: httpx.Client, name: str = "python3", **body: Any) -> str:
    r = http.post("/api/kernels", json={"name": name, **body})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def kernel_id(http: httpx.Client) -> Iterator[str]:
    """One kernel shared by a module's tests."""
    kid = start_kernel(http)
    yield kid
    http.delete(f"/api/kernels/{kid}")
