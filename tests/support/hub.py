"""A real JupyterHub with the real configurable-http-proxy, on free loopback ports.

Reusable by any test that needs a hub (auth, spawners)::

    hub = HubProcess(tmp_dir, spawner_cmd=singleuser_command()).start()
    hub.create_user("alice")
    hub.start_server("alice")              # via the REST API, waits until ready
    with hub.browser() as c:                # httpx client on the proxy URL
        hub.browser_login(c, "alice")       # form login at /hub/login
    token = hub.new_token("alice", scopes=[...])
    hub.stop()

Every user logs in with `HubProcess.password` (JupyterHub's
SharedPasswordAuthenticator).  A hub service token with admin-like scopes
drives the REST API (`hub.api(...)`).  Extra `jupyterhub_config.py` lines
can be passed as `extra_config`.  The hub, the proxy and spawned servers
are in one process group and are killed on `stop()`, as is anything else
still running in the work folder (kernels that outlived their server).

`tests.hub.hubproc.HubProcess` builds on this class: the same process
handling and REST helpers, with `zasperhub hub` and its generated config
instead of a hand-written `jupyterhub_config.py`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
#: The configurable-http-proxy that `npm ci` in tests/node installs.
CHP_PATH = REPO / "tests" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"

SERVICE_SCOPES = [
    "admin:users",
    "admin:servers",
    "tokens",
    "list:users",
    "read:users",
    "read:users:activity",
    "users:activity",
    "access:servers",
]


def singleuser_command() -> list[str]:
    """The `zasperhub-singleuser` console script of this Python environment."""
    script = Path(sys.executable).parent / "zasperhub-singleuser"
    if script.exists():
        return [str(script)]
    found = shutil.which("zasperhub-singleuser")
    if found:
        return [found]
    return [sys.executable, "-c", "from zasperhub.platform.cli import singleuser_main; singleuser_main()"]


#: File (in the server's working directory) where `probe_singleuser_command` writes its findings.
MODULES_REPORT = "zasper-heavy-modules.json"

_PROBE = f"""
import atexit, json, os, sys
def _report():
    heavy = sorted(m for m in sys.modules if m.partition(".")[0] in ("jupyterhub", "sqlalchemy"))
    with open({MODULES_REPORT!r}, "w") as f:
        json.dump({{"heavy": heavy, "modules": len(sys.modules)}}, f)
atexit.register(_report)
from zasperhub.platform.cli import singleuser_main
singleuser_main(sys.argv[1:])
"""


def probe_singleuser_command() -> list[str]:
    """`zasperhub-singleuser`, reporting on exit which jupyterhub/sqlalchemy modules it loaded.

    The report lands in the server's working directory (its home under the
    Simple spawner) when the server exits normally (SIGTERM from the hub).
    """
    return [sys.executable, "-c", _PROBE]


class HubProcess:
    """One JupyterHub + CHP; users' servers spawned by SimpleLocalProcessSpawner by default."""

    password = "hub-test-password-1"
    #: Default seconds to wait for a user's server to become ready.
    spawn_timeout: float = 60

    def __init__(
        self,
        workdir: Path,
        *,
        spawner_cmd: list[str] | None = None,
        spawner_class: str = "jupyterhub.spawner.SimpleLocalProcessSpawner",
        spawner_env: dict[str, str] | None = None,
        spawner_args: list[str] | None = None,
        admin_users: tuple[str, ...] = (),
        extra_config: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.hub_port = free_port()
        self.proxy_api_port = free_port()
        self.service_token = secrets.token_hex(20)
        self.spawner_cmd = spawner_cmd or singleuser_command()
        self.spawner_class = spawner_class
        self.spawner_env = {"PYTHONUNBUFFERED": "1", **(spawner_env or {})}
        self.spawner_args = list(spawner_args or [])
        self.admin_users = admin_users
        self.extra_config = extra_config
        self.env = dict(os.environ, **(env or {}))
        self.env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
        self.log_path = self.workdir / "jupyterhub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    # -- addresses ---------------------------------------------------------------
    @property
    def url(self) -> str:
        """The public URL (the proxy)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/hub/api"

    # -- lifecycle ---------------------------------------------------------------
    def write_config(self) -> Path:
        """Write `jupyterhub_config.py` for this hub; returns its path."""
        if not CHP_PATH.exists():
            raise RuntimeError(f"configurable-http-proxy not installed at {CHP_PATH}; run `npm ci` in tests/node")
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        config = f"""
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{str(CHP_PATH)!r}]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = "sqlite:///{self.workdir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = {str(self.workdir / 'jupyterhub_cookie_secret')!r}
c.JupyterHub.pid_file = {str(self.workdir / 'jupyterhub.pid')!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {self.password!r}
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {set(self.admin_users)!r}
c.JupyterHub.spawner_class = {self.spawner_class!r}
c.Spawner.cmd = {self.spawner_cmd!r}
c.Spawner.environment = {self.spawner_env!r}
c.Spawner.args = {self.spawner_args!r}
c.Spawner.start_timeout = 60
c.Spawner.http_timeout = 60
c.SimpleLocalProcessSpawner.home_dir_template = {str(home / '{username}')!r}
c.JupyterHub.services = [{{"name": "test-driver", "api_token": {self.service_token!r}}}]
c.JupyterHub.load_roles = [{{"name": "test-driver", "scopes": {SERVICE_SCOPES!r}, "services": ["test-driver"]}}]
"""
        path = self.workdir / "jupyterhub_config.py"
        path.write_text(config + "\n" + self.extra_config + "\n")
        return path

    def command(self) -> list[str]:
        """Prepare the configuration and return the command that runs the hub."""
        return [sys.executable, "-m", "jupyterhub", "-f", str(self.write_config())]

    def start(self, timeout: float = 60) -> HubProcess:
        """Run the hub and wait (bounded) until its API answers."""
        command = self.command()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - stays open while the hub runs; closed in stop()
        self.proc = subprocess.Popen(
            command,
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                if httpx.get(self.api_url + "/", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyterhub did not answer within {timeout}s:\n{self.log()[-5000:]}")

    def stop(self, timeout: float = 20) -> None:
        """Stop the hub (it stops the proxy and servers), then kill whatever is left."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            try:
                # The proxy and spawned servers share the hub's process group.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        kill_processes_under(self.workdir)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- REST API ------------------------------------------------------------------
    def api(self, method: str, path: str, *, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        """A hub REST call with the test service's token."""
        headers = {"Authorization": f"token {self.service_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.api_url + path, headers=headers, timeout=timeout, **kwargs)

    def create_user(self, name: str, admin: bool = False) -> dict[str, Any]:
        r = self.api("POST", f"/users/{name}", json={"admin": admin})
        if r.status_code == 409:
            return self.user_model(name)
        r.raise_for_status()
        return r.json()

    def user_model(self, name: str) -> dict[str, Any]:
        r = self.api("GET", f"/users/{name}")
        r.raise_for_status()
        return r.json()

    def server_ready(self, name: str) -> bool:
        """Whether `name`'s default server is running and ready."""
        server = self.user_model(name).get("servers", {}).get("")
        return bool(server and server.get("ready"))

    def wait_server(self, name: str, ready: bool = True, timeout: float | None = None) -> None:
        """Wait (bounded) until `name`'s default server is ready, or gone when `ready` is False."""
        timeout = self.spawn_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready and self.server_ready(name):
                return
            if not ready and not self.user_model(name).get("servers"):
                return
            time.sleep(0.25)
        state = "ready" if ready else "stopped"
        raise AssertionError(f"server of {name} not {state} within {timeout}s:\n{self.log()[-5000:]}")

    def start_server(self, name: str, timeout: float | None = None, options: dict[str, Any] | None = None) -> str:
        """Spawn `name`'s default server (creating the user) and wait until ready; returns its URL."""
        self.create_user(name)
        r = self.api("POST", f"/users/{name}/server", json=options or {})
        if r.status_code not in (201, 202, 400):
            raise RuntimeError(f"spawn failed: {r.status_code} {r.text}")
        self.wait_server(name, True, timeout)
        return self.url + self.user_model(name)["servers"][""]["url"]

    def stop_server(self, name: str, timeout: float | None = None) -> None:
        """Stop `name`'s default server and wait until the hub forgets it."""
        r = self.api("DELETE", f"/users/{name}/server")
        if r.status_code not in (202, 204, 400):
            r.raise_for_status()
        self.wait_server(name, False, timeout)

    def new_token(self, name: str, scopes: list[str] | None = None, expires_in: int | None = None) -> str:
        """An API token of user `name` (optionally limited in scopes and lifetime)."""
        body: dict[str, Any] = {"note": "test"}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_in is not None:
            body["expires_in"] = expires_in
        r = self.api("POST", f"/users/{name}/tokens", json=body)
        r.raise_for_status()
        return r.json()["token"]

    # -- browser -------------------------------------------------------------------
    def browser(self, **kwargs: Any) -> httpx.Client:
        """An httpx client on the proxy URL that keeps cookies like a browser."""
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, **kwargs)

    def browser_login(self, client: httpx.Client, name: str, password: str | None = None) -> httpx.Response:
        """Log in through the hub's login form (its _xsrf cookie and field)."""
        page = client.get("/hub/login", follow_redirects=True)
        page.raise_for_status()
        match = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
        data = {"username": name, "password": password or self.password}
        if match:
            data["_xsrf"] = match.group(1)
        r = client.post("/hub/login", data=data, follow_redirects=False)
        if r.status_code != 302:
            raise RuntimeError(f"hub login failed for {name}: {r.status_code} {r.text[:500]}")
        return r


def _processes_under(folder: Path) -> list[psutil.Process]:
    """Processes whose working directory is `folder` or inside it."""
    found = []
    root = str(Path(folder).resolve())
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


def load_json(response: httpx.Response) -> Any:
    """Response JSON with the body in the error when it is not JSON."""
    try:
        return response.json()
    except json.JSONDecodeError as e:
        raise AssertionError(f"not JSON ({response.status_code}): {response.text[:500]}") from e
