"""A real `zasperhub hub` (JupyterHub + configurable-http-proxy) for end-to-end tests.

The hub is configured the way an admin would do it: `zasperhub hub
--generate-config` writes the config file, the test appends its settings
(free ports, the Simple spawner, SeaweedFS, a service token) to that file,
then `zasperhub hub` runs it.  Process handling (bounded waits, stopping the
hub, the proxy and any server or kernel left under the test's folder) and
the REST helpers come from `tests.support.hub.HubProcess`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.support import hub as support_hub
from tests.support.hub import _processes_under, kill_processes_under

__all__ = ["HubProcess", "kill_processes_under", "process_environ"]

NODE_BIN = Path(__file__).resolve().parents[1] / "node" / "node_modules" / ".bin"
CHP = NODE_BIN / "configurable-http-proxy"
PASSWORD = "correct horse battery"

#: Scopes of the test's own service (drives the hub like an admin script).
SERVICE_SCOPES = ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "access:servers", "admin:auth_state"]


class HubProcess(support_hub.HubProcess):
    """One `zasperhub hub` with dummy auth on 127.0.0.1."""

    password = PASSWORD
    spawn_timeout = 120

    def __init__(self, base: Path, *, extra_config: str = "", env: dict[str, str] | None = None,
                 storage_url: str = "", idle_timeout: int = 0, db_url: str = "") -> None:
        env = dict(env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        super().__init__(Path(base), extra_config=extra_config, env=env)
        self.base = self.workdir
        self.data_dir = self.base / "hub"
        self.homes = self.base / "homes"
        self.homes.mkdir(parents=True, exist_ok=True)
        self.storage_url = storage_url
        self.idle_timeout = idle_timeout
        self.db_url = db_url
        self.log_path = self.base / "hub.log"

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
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.DummyAuthenticator.password = {PASSWORD!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services.append({{"name": "e2e", "api_token": {self.service_token!r}}})
c.JupyterHub.load_roles.append({{"name": "e2e", "scopes": {SERVICE_SCOPES!r}, "services": ["e2e"]}})
{self.extra_config}
"""
        with open(self.config_path, "a") as f:
            f.write(settings)

    def command(self) -> list[str]:
        if not self.config_path.exists():
            self.configure()
        args = [f"--proxy-command={CHP}"]
        if self.db_url:
            args.append(f"--db-url={self.db_url}")
        return self._zasperhub(*args)

    def start(self, timeout: float = 90) -> HubProcess:
        super().start(timeout)
        return self

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)

    # -- the e2e suites' vocabulary -------------------------------------------------------
    def ensure_user(self, name: str) -> None:
        self.create_user(name)

    def user_token(self, name: str) -> str:
        return self.new_token(name, expires_in=3600)

    def login(self, name: str) -> httpx.Client:
        """Log in through the hub's form, as a browser does; returns the cookie-carrying client."""
        client = self.browser(timeout=60, follow_redirects=False)
        self.browser_login(client, name)
        return client

    def server_pids(self) -> list[int]:
        """Processes of single-user servers (cwd under this hub's home folders)."""
        return [p.pid for p in _processes_under(self.homes) if "zasperhub" in " ".join(p.info.get("cmdline") or [])]


def process_environ(pid: int) -> dict[str, str]:
    """The environment of a running process (root reads any)."""
    return psutil.Process(pid).environ()
