"""Start the servers under test: ``zasperhub`` and stock ``jupyter-server``.

Both get the same isolated Jupyter environment (temp config/runtime/IPython
dirs, the benchmark echo kernelspec on ``JUPYTER_PATH``), a fresh root dir,
a token, and a free loopback port.  Each run is a new process, so cold start
and idle RSS are measured for every configuration.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
from benchmarks.echo_kernel import install_kernelspec

MB = 1024 * 1024
#: Servers (and so their kernels) run at the priority the harness started with,
#: even though the harness itself raises its own priority.
BASE_NICE = os.getpriority(os.PRIO_PROCESS, 0)
TOKEN = "bench-token-5f0c2a9e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_jupyter_server() -> None:
    """Install stock jupyter-server with pip if it is not importable."""
    if importlib.util.find_spec("jupyter_server") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "jupyter-server>=2.14"], check=True)


def command(server: str, port: int, root: Path, extra: list[str]) -> list[str]:
    """The command line for ``server`` (``zasperhub`` or ``jupyter-server``)."""
    if server == "zasperhub":
        return [sys.executable, "-m", "zasperhub.platform.cli", f"--port={port}", "--ip=127.0.0.1",
                f"--token={TOKEN}", f"--root-dir={root}", "--no-browser", *extra]
    if server == "jupyter-server":
        # `python -m jupyter_server` is the `jupyter-server` script without a
        # shell shim in front, so both servers start the same way.
        return [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
                "--ServerApp.allow_root=True", "--ServerApp.port_retries=0", *extra]
    raise ValueError(f"unknown server {server!r}; choose zasperhub or jupyter-server")


def server_version(server: str) -> str:
    if server == "zasperhub":
        from importlib.metadata import version
        return version("zasperhub")
    import jupyter_server
    return jupyter_server.__version__


#: Server extensions that come with jupyter-server itself (a required dependency).
STOCK_EXTENSIONS = {"jupyter_server_terminals"}


def disable_extra_server_extensions(config_dir: Path) -> list[str]:
    """Compare with *stock* jupyter-server: turn off extensions other packages
    (jupyterlab, notebook_shim, jupyter_lsp …) enabled in this environment.

    Writes ``jupyter_server_config.json`` in the run's private config dir,
    which takes precedence over the environment-wide ``config.d`` files.
    """
    from jupyter_core.paths import jupyter_config_path

    found: set[str] = set()
    for directory in jupyter_config_path():
        for path in sorted(Path(directory).glob("jupyter_server_config.d/*.json")):
            try:
                enabled = json.loads(path.read_text()).get("ServerApp", {}).get("jpserver_extensions", {})
            except (OSError, ValueError):
                continue
            found.update(name for name, on in enabled.items() if on)
    extra = sorted(found - STOCK_EXTENSIONS)
    config = {"ServerApp": {"jpserver_extensions": {name: False for name in extra}}}
    (config_dir / "jupyter_server_config.json").write_text(json.dumps(config, indent=1))
    return extra


@dataclass
class BenchEnv:
    """An isolated Jupyter environment shared by every server of one run."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="zh-bench-")))

    def __post_init__(self) -> None:
        install_kernelspec(self.base / "share")
        for sub in ("config", "runtime", "ipython", "roots"):
            (self.base / sub).mkdir(exist_ok=True)
        self.disabled_extensions = disable_extra_server_extensions(self.base / "config")

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_PATH=os.pathsep.join(filter(None, [str(self.base / "share"), env.get("JUPYTER_PATH")])),
            JUPYTER_CONFIG_DIR=str(self.base / "config"), JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
            IPYTHONDIR=str(self.base / "ipython"), JUPYTER_PLATFORM_DIRS="1", PYTHONUNBUFFERED="1",
        )
        return env


class RunningServer:
    """One server process; ``start`` measures cold start to the first 200 on /api/status."""

    def __init__(self, name: str, env: BenchEnv, extra: list[str] | None = None) -> None:
        self.name = name
        self.env = env
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=env.base / "roots"))
        self.cmd = command(name, self.port, self.root, extra or [])
        self.log_path = self.root.parent / f"{self.root.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.cold_start_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> RunningServer:
        log = open(self.log_path, "wb")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env.environ(),
                                     cwd=self.root, start_new_session=True,
                                     preexec_fn=lambda: os.setpriority(os.PRIO_PROCESS, 0, BASE_NICE))
        log.close()
        headers = {"Authorization": f"token {TOKEN}"}
        with httpx.Client(timeout=2, headers=headers) as http:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
                try:
                    if http.get(self.url + "/api/status").status_code == 200:
                        self.cold_start_s = time.perf_counter() - t0
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /api/status within {timeout}s:\n{self.log()[-3000:]}")

    def rss_mb(self) -> float | None:
        try:
            return round(psutil.Process(self.pid).memory_info().rss / MB, 2)
        except psutil.Error:
            return None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL of the whole process group (kernels included)."""
        if self.proc is None:
            return
        try:
            # Kernels may run in their own sessions: remember them to reap below.
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for child in children:
            try:
                child.kill()
            except psutil.Error:
                pass
