"""Start-up figures for zasperhub and stock jupyter-server, side by side in one run.

Measured per fresh server process, over the public API only:

- cold start: spawn → first 200 on `GET /api/status` (polled every 5 ms);
- RSS at that first 200, and idle RSS a few seconds later (background
  warm-up done), of the server process alone (psutil);
- kernel start: `POST /api/sessions` (kernel `python3`) → WebSocket open →
  `kernel_info_request` → iopub `status: idle` answering it, i.e. the
  moment a client can actually use the kernel;
- for zasperhub also with `--KernelRegistry.pool_size=N`, once the pool is full.

Usage:  python -m benchmarks.startup_bench [--runs 5] [--pool-size 2]
Writes benchmarks/results/startup.md and startup.json.  On a shared 2-core
machine absolute numbers move with load; the ratios are what to read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets

from benchmarks.servers import free_port

TOKEN = "startup-bench-7c1d"
MB = 1024 * 1024
RESULTS = Path(__file__).resolve().parent / "results"


def command(server: str, port: int, root: Path, extra: list[str]) -> list[str]:
    if server == "zasperhub":
        return [sys.executable, "-m", "zasperhub.platform.cli", f"--port={port}", "--ip=127.0.0.1", f"--token={TOKEN}",
                f"--root-dir={root}", "--no-browser", *extra]
    return [sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True",
            "--ServerApp.port_retries=0", *extra]


class Server:
    """One fresh server process in an isolated Jupyter environment."""

    def __init__(self, server: str, extra: list[str], workdir: Path) -> None:
        self.name = server
        self.port = free_port()
        self.root = workdir / "root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{server}-{self.port}.log"
        env = dict(os.environ)
        for var, sub in (("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTER_CONFIG_DIR", "config"), ("IPYTHONDIR", "ipython")):
            env[var] = str(workdir / sub)
        self.env = env
        self.cmd = command(server, self.port, self.root, extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"token {TOKEN}"}

    def start(self, timeout: float = 60) -> tuple[float, int]:
        """Spawn and poll /api/status; returns (seconds to first 200, RSS bytes then)."""
        with open(self.log_path, "wb") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        with httpx.Client(headers=self.headers, timeout=2) as client:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited:\n{self.log()}")
                try:
                    if client.get(self.url + "/api/status").status_code == 200:
                        elapsed = time.perf_counter() - t0
                        return elapsed, psutil.Process(self.proc.pid).memory_info().rss
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer within {timeout}s:\n{self.log()}")

    def rss(self) -> int:
        assert self.proc is not None
        return psutil.Process(self.proc.pid).memory_info().rss

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray kernels, if any
        except ProcessLookupError:
            pass
        self.proc.wait(5)


async def kernel_start(srv: Server, index: int, timeout: float = 60) -> float:
    """Seconds from POST /api/sessions to the iopub idle answering a kernel_info_request."""
    session = uuid.uuid4().hex
    body = {"path": f"bench-{index}.ipynb", "type": "notebook", "name": "", "kernel": {"name": "python3"}}
    async with httpx.AsyncClient(headers=srv.headers, timeout=timeout) as client:
        t0 = time.perf_counter()
        r = await client.post(srv.url + "/api/sessions", json=body)
        r.raise_for_status()
        kernel_id = r.json()["kernel"]["id"]
        ws_url = f"ws://127.0.0.1:{srv.port}/api/kernels/{kernel_id}/channels?session_id={session}&token={TOKEN}"
        async with websockets.connect(ws_url, max_size=None, open_timeout=timeout) as ws:
            msg_id = uuid.uuid4().hex
            header = {"msg_id": msg_id, "username": "bench", "session": session, "msg_type": "kernel_info_request",
                      "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            await ws.send(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"}))
            deadline = time.perf_counter() + timeout
            while time.perf_counter() < deadline:
                frame = await asyncio.wait_for(ws.recv(), deadline - time.perf_counter())
                if isinstance(frame, bytes):
                    continue  # binary frames carry buffers; status messages never do
                msg = json.loads(frame)
                if (msg.get("channel") == "iopub" and msg["header"]["msg_type"] == "status"
                        and msg["parent_header"].get("msg_id") == msg_id and msg["content"]["execution_state"] == "idle"):
                    return time.perf_counter() - t0
    raise TimeoutError("no iopub idle for kernel_info_request")


def wait_pool(srv: Server, size: int, timeout: float = 120) -> None:
    """Until the server logged its pool full (needs --log-level=INFO)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"ready ({size} of {size})" in srv.log():
            return
        time.sleep(0.1)
    raise RuntimeError(f"pool not full within {timeout}s:\n{srv.log()}")


def run_config(server: str, extra: list[str], runs: int, kernels: int, idle_wait: float, pool: int) -> dict[str, Any]:
    """`runs` fresh servers: cold start, RSS, `kernels` sequential kernel starts each."""
    out: dict[str, list[float]] = {"cold_s": [], "rss_first_mb": [], "rss_idle_mb": [], "kernel_first_s": [], "kernel_s": []}
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
            srv = Server(server, extra, Path(tmp))
            try:
                cold, rss_first = srv.start()
                out["cold_s"].append(cold)
                out["rss_first_mb"].append(rss_first / MB)
                if pool:
                    wait_pool(srv, pool)
                time.sleep(idle_wait)
                out["rss_idle_mb"].append(srv.rss() / MB)
                for i in range(kernels):
                    seconds = asyncio.run(kernel_start(srv, i))
                    out["kernel_first_s" if i == 0 else "kernel_s"].append(seconds)
            finally:
                srv.stop()
    return {key: values for key, values in out.items()}


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if unit == "s" else f"{value:.1f} MB"


def write_report(results: dict[str, dict[str, Any]], args: argparse.Namespace, command_line: str) -> str:
    zh, js = results["zasperhub"], results["jupyter-server"]
    pooled = results.get("zasperhub (pool)")
    rows = [
        ("cold start (spawn → first 200 /api/status)", "cold_s", "s"),
        ("RSS at first 200", "rss_first_mb", "MB"),
        (f"idle RSS ({args.idle_wait:.0f} s after start)", "rss_idle_mb", "MB"),
        ("first kernel start (POST /api/sessions → iopub idle)", "kernel_first_s", "s"),
        ("later kernel starts", "kernel_s", "s"),
    ]
    lines = [
        "# Start-up: zasperhub vs jupyter-server",
        "",
        f"Medians over {args.runs} fresh servers per configuration; {args.kernels} sequential kernel starts per server.",
        f"Pool column: zasperhub with `--KernelRegistry.pool_size={args.pool_size}`, measured once the pool is full.",
        "Ratio = zasperhub / jupyter-server (lower is better). Shared 2-core machine: read the ratios, not the absolute values.",
        "",
        "| metric | zasperhub | zasperhub (pool) | jupyter-server | ratio | ratio (pool) |",
        "|---|---|---|---|---|---|",
    ]
    for label, key, unit in rows:
        a, b = med(zh[key]), med(js[key])
        p = med(pooled[key]) if pooled else None
        ratio = f"{a / b:.2f}" if a is not None and b else "–"
        ratio_p = f"{p / b:.2f}" if p is not None and b else "–"
        lines.append(f"| {label} | {fmt(a, unit)} | {fmt(p, unit)} | {fmt(b, unit)} | {ratio} | {ratio_p} |")
    lines += [
        "",
        (
            f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"jupyter_server {_version('jupyter_server')}, ipykernel {_version('ipykernel')}, jupyter_client {_version('jupyter_client')}."
        ),
        f"Load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        "",
        f"Command: `{command_line}`",
        "",
    ]
    return "\n".join(lines)


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module.replace("_", "-"))
    except Exception:  # noqa: BLE001 - report only
        return "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh servers per configuration")
    parser.add_argument("--kernels", type=int, default=2, help="sequential kernel starts per server (≤ pool size for the pool column)")
    parser.add_argument("--pool-size", type=int, default=2, help="pool size for the zasperhub pool configuration (0: skip)")
    parser.add_argument("--idle-wait", type=float, default=3.0, help="seconds between first 200 and the idle RSS sample")
    parser.add_argument("--out", type=Path, default=RESULTS / "startup.md")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.kernels < 1 or args.pool_size < 0:
        parser.error("--runs and --kernels must be ≥ 1, --pool-size ≥ 0")
    command_line = "python -m benchmarks.startup_bench " + " ".join(sys.argv[1:] if argv is None else argv)
    configs = [("zasperhub", "zasperhub", [], 0), ("jupyter-server", "jupyter-server", [], 0)]
    if args.pool_size:
        pool_args = [f"--KernelRegistry.pool_size={args.pool_size}", "--log-level=INFO"]
        configs.append(("zasperhub (pool)", "zasperhub", pool_args, args.pool_size))
    results: dict[str, dict[str, Any]] = {}
    # Rounds alternate the servers, so a change in the shared machine's load
    # during the run affects every configuration alike.
    for round_no in range(args.runs):
        for label, server, extra, pool in configs:
            print(f"round {round_no + 1}/{args.runs}: {label} ...", flush=True)
            kernels = min(args.kernels, pool) if pool else args.kernels
            one = run_config(server, extra, 1, kernels, args.idle_wait, pool)
            merged = results.setdefault(label, {key: [] for key in one})
            for key, values in one.items():
                merged[key].extend(values)
    report = write_report(results, args, command_line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(report)


if __name__ == "__main__":
    main()
