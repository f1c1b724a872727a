"""A real `zasperhub hub` (JupyterHub + configurable-http-proxy) for end-to-end tests.

The hub is configured the way an admin would do it: `zasperhub hub
--generate-config` writes the config file, the test appends its settings
(free ports, the Simple spawner, SeaweedFS, a service token) to that file,
then `zasperhub hub` runs it.  Every wait is bounded; `stop()` ends the hub,
the proxy and any single-user server or kernel left under the test's folder.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.ports import free_port

NODE_BIN = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin"
CHP = NODE_BIN / "configurable-http-proxy"
PASSWORD = "correct horse battery"

#: Scopes of the test's own service (drives the hub like an admin script).
SERVICE_SCOPES = ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "access:servers", "admin:auth_state"]


class HubProcess:
    """One `zasperhub hub` with dummy auth on 127.0.0.1."""

    def __init__(self, base: Path, *, extra_config: str = "", env: dict[str, str] | None = None,
                 storage_url: str = "", idle_timeout: int = 0, db_url: str = "") -> None:
        self.base = Path(base)
        self.data_dir = self.base / "hub"
        self.homes = self.base / "homes"
        self.homes.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.api_port = free_port()
        self.service_token = secrets.token_hex(24)
        self.extra_config = extra_config
        self.env = dict(os.environ, **(env or {}))
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.storage_url = storage_url
        self.idle_timeout = idle_timeout
        self.db_url = db_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.base / "hub.log"
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "zasperhub_hub_config.py"

    def _zasperhub(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "zasperhub.platform.cli", "hub", f"--data-dir={self.data_dir}", *args]

    def configure(self) -> None:
        """Generate the config file as an admin would, then add the test's settings."""
        out = subprocess.run(
            self._zasperhub("--generate-config", "--authenticator=dummy", f"--port={self.port}",
                            f"--storage-url={self.storage_url}", f"--idle-timeout={self.idle_timeout}"),
            check=False, capture_output=True, text=True, timeout=60, env=self.env,
        )
        assert out.returncode == 0, out.stderr
        assert "Wrote" in out.stdout
        settings = f"""
# ---- added by the test ----
c.JupyterHub.spawner_class = "zasperhub.spawners.local.SimpleLocalZasperSpawner"
c.SimpleLocalZasperSpawner.home_dir_template = {str(self.homes / "{username}")!r}
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services.append({{"name": "e2e", "api_token": {self.service_token!r}}})
c.JupyterHub.load_roles.append({{"name": "e2e", "scopes": {SERVICE_SCOPES!r}, "services": ["e2e"]}})
{self.extra_config}
"""
        with open(self.config_path, "a") as f:
            f.write(settings)

    def start(self, timeout: float = 90) -> HubProcess:
        if not self.config_path.exists():
            self.configure()
        args = [f"--proxy-command={CHP}"]
        if self.db_url:
            args.append(f"--db-url={self.db_url}")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - stays open while the hub runs; closed in stop()
        self.proc = subprocess.Popen(self._zasperhub(*args), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.base, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "/hub/api/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hub not ready within {timeout}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the hub (it stops the proxy and servers); then kill any leftovers."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None
        kill_processes_under(self.base)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- hub API ----------------------------------------------------------------------
    def api(self, method: str, path: str, *, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"token {self.service_token}"}
        return httpx.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=timeout, **kwargs)

    def user_model(self, name: str) -> dict[str, Any]:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json()

    def server_ready(self, name: str) -> bool:
        server = self.user_model(name).get("servers", {}).get("")
        return bool(server and server.get("ready"))

    def wait_server(self, name: str, ready: bool = True, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server_ready(name) == ready:
                return
            time.sleep(0.3)
        raise AssertionError(f"server of {name} not {'ready' if ready else 'stopped'} within {timeout}s:\n{self.log()[-4000:]}")

    def ensure_user(self, name: str) -> None:
        r = self.api("POST", f"/users/{name}")
        assert r.status_code in (201, 409), r.text

    def start_server(self, name: str) -> None:
        self.ensure_user(name)
        r = self.api("POST", f"/users/{name}/server")
        assert r.status_code in (201, 202), r.text
        self.wait_server(name, True)

    def stop_server(self, name: str) -> None:
        r = self.api("DELETE", f"/users/{name}/server")
        assert r.status_code in (202, 204), r.text
        self.wait_server(name, False)

    def user_token(self, name: str) -> str:
        r = self.api("POST", f"/users/{name}/tokens", json={"note": "e2e", "expires_in": 3600})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def login(self, name: str) -> httpx.Client:
        """Log in through the hub's form, as a browser does; returns the cookie-carrying client."""
        client = httpx.Client(base_url=self.url, timeout=60, follow_redirects=False)
        client.get("/hub/login")
        xsrf = client.cookies.get("_xsrf", "")
        r = client.post("/hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf})
        assert r.status_code == 302, (r.status_code, r.text[:500])
        return client

    def server_pids(self) -> list[int]:
        """Processes of single-user servers (cwd under this hub's home folders)."""
        return [p.pid for p in _processes_under(self.homes) if "zasperhub" in " ".join(p.info.get("cmdline") or [])]


def _processes_under(folder: Path) -> list[psutil.Process]:
    found = []
    root = str(folder.resolve())
    for p in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = p.info.get("cwd") or ""
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(p)
    return found


def kill_processes_under(folder: Path) -> None:
    """SIGKILL every process whose working directory is inside `folder`."""
    for p in _processes_under(folder):
        try:
            p.kill()
        except psutil.Error:
            pass


def process_environ(pid: int) -> dict[str, str]:
    """The environment of a running process (root reads any)."""
    return psutil.Process(pid).environ()
