"""`zasperhub-singleuser` start-up: missing hub environment, unreachable hub."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.hub import singleuser_command
from tests.support.ports import free_port


def hub_free_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(extra)
    return env


def test_singleuser_outside_a_hub_refuses_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*singleuser_command(), "--port=0", f"--root-dir={tmp_path}"],
        capture_output=True, text=True, env=hub_free_env(), timeout=60, check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "JUPYTERHUB_API_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unreachable_hub_is_logged_and_the_server_still_answers(tmp_path: Path) -> None:
    port = free_port()
    dead_hub = free_port()  # nothing listens here
    env = hub_free_env(
        JUPYTERHUB_API_TOKEN="t" * 32,
        JUPYTERHUB_CLIENT_ID="jupyterhub-user-alice",
        JUPYTERHUB_USER="alice",
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{dead_hub}/hub/api",
        JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}/user/alice/",
        JUPYTERHUB_OAUTH_ACCESS_SCOPES='["access:servers!server=alice/"]',
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*singleuser_command(), f"--root-dir={tmp_path}"], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/user/alice"
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready:
            try:
                ready = httpx.get(f"{base}/api", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready, log_path.read_text()
        # Requests needing the hub fail clearly instead of hanging or crashing.
        r = httpx.get(f"{base}/api/status", headers={"Authorization": "token abc"}, timeout=30)
        assert r.status_code == 503 and "JupyterHub" in r.json()["message"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "unreachable after" not in log_path.read_text():
            time.sleep(0.25)
        assert "JupyterHub API at" in log_path.read_text() and "unreachable after 5 attempts" in log_path.read_text()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
