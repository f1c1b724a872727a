"""Hub scale benchmark: spawn → ready time, per-user RSS, hub API latency.

For 1, 10 and 50 users on this machine, under one real JupyterHub +
configurable-http-proxy (`zasperhub hub`), compare:

- zasper: `zasperhub-singleuser` (SimpleLocalZasperSpawner);
- stock:  `jupyterhub-singleuser` (jupyter-server + jupyterlab; the same
  spawner base, SimpleLocalProcessSpawner).

Each user gets a server, then one running Python kernel.  Measured:
spawn → ready (from the start request until the hub reports the server
ready, all N users started at once), the RSS of each user's server process
idle after start and with its kernel running (the kernel's own RSS is shown
apart: it is the same program for both), and the hub API's latency
(GET /hub/api/users/{name}) with all N users active.

Notebooks are on local disk so the numbers are the servers' own cost.  Not
a timed test; run it by hand:

    python -m benchmarks.hub_scale                     # 1, 10, 50 users, both
    python -m benchmarks.hub_scale --users 1,10 --flavors zasper

Every wait is bounded (`--spawn-timeout` per spawn, 120 s per kernel start,
`--max-minutes` for the whole run: later configurations are skipped once it
is spent), and each configuration's hub, proxy, servers and kernels are
killed before the next one starts (everything runs under a temporary folder
that is swept for leftover processes).  The load average before and after
each configuration is recorded: on a shared machine it explains the times.

Results go to benchmarks/results/hub_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hub.hubproc import HubProcess

MB = 1024 * 1024
RESULTS = REPO / "benchmarks" / "results"

#: Both flavors: 50 servers starting at once on 2 cores can take minutes.
COMMON_CONFIG = """
c.Spawner.start_timeout = 600
c.Spawner.http_timeout = 600
"""

FLAVOR_CONFIG = {
    "zasper": "",
    "stock": """
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r}
c.Spawner.cmd = ["jupyterhub-singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"]  # benchmarks run as root; zasperhub does not refuse it
""",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def server_processes(hub: HubProcess) -> dict[str, psutil.Process]:
    """User name → the user's server process (found by its JUPYTERHUB_USER)."""
    found = {}
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cwd = p.info.get("cwd") or ""
            if not cwd.startswith(str(hub.homes)):
                continue
            cmd = " ".join(p.info.get("cmdline") or [])
            if "ipykernel" in cmd or "kernel" in cmd.split()[-1:]:
                continue
            user = p.environ().get("JUPYTERHUB_USER")
            if user and ("singleuser" in cmd or "zasperhub" in cmd):
                found[user] = p
        except psutil.Error:
            continue
    return found


def kernel_rss(server: psutil.Process) -> float:
    total = 0.0
    for child in server.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total / MB


def spawn_all(hub: HubProcess, users: list[str], timeout: float) -> dict[str, float]:
    """Start every user's server at once; seconds from request to ready, per user."""
    for name in users:
        hub.ensure_user(name)

    def one(name: str) -> float:
        t0 = time.monotonic()
        # The hub answers a spawn request only when the spawn is done or slow;
        # with dozens at once on a small machine that can take minutes.
        r = hub.api("POST", f"/users/{name}/server", timeout=timeout)
        if r.status_code not in (201, 202):
            raise RuntimeError(f"spawn {name}: {r.status_code} {r.text}")
        if r.status_code == 201:
            return time.monotonic() - t0
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            server = hub.user_model(name).get("servers", {}).get("")
            if server is None:
                raise RuntimeError(f"spawn of {name} failed; hub log:\n{hub.log()[-3000:]}")
            if server.get("ready"):
                return time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError(f"{name} not ready within {timeout}s; hub log:\n{hub.log()[-3000:]}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(50, len(users))) as pool:
        return dict(zip(users, pool.map(one, users)))


def spawn_one_more(hub: HubProcess, n_active: int, timeout: float, repeats: int = 3) -> list[float]:
    """Ready times of a user who starts while `n_active` others are already working.

    The burst figure (everyone at once) measures the machine's CPU, not what
    a user waits for: in an organisation servers start one at a time while
    the others are running.  Each late user is stopped again before the next.
    """
    times = []
    for i in range(repeats):
        name = f"late{n_active}x{i}"
        times.append(spawn_all(hub, [name], timeout)[name])
        r = hub.api("DELETE", f"/users/{name}/server", timeout=timeout)
        if r.status_code not in (202, 204):
            raise RuntimeError(f"stop {name}: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while hub.user_model(name).get("servers", {}).get("") and time.monotonic() < deadline:
            time.sleep(0.1)
    return times


def start_kernels(hub: HubProcess, users: list[str]) -> dict[str, str]:
    """One python3 kernel per user through the user's server API; returns tokens."""
    tokens = {name: hub.user_token(name) for name in users}

    def one(name: str) -> None:
        r = httpx.post(f"{hub.url}/user/{name}/api/kernels", json={"name": "python3"},
                       headers={"Authorization": f"token {tokens[name]}"}, timeout=120)
        r.raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(10, len(users))) as pool:
        list(pool.map(one, users))
    return tokens


def hub_api_latency(hub: HubProcess, users: list[str], requests: int = 200) -> dict[str, float]:
    times = []
    with httpx.Client(base_url=f"{hub.url}/hub/api", headers={"Authorization": f"token {hub.service_token}"}, timeout=30) as client:
        for i in range(requests):
            t0 = time.perf_counter()
            client.get(f"/users/{users[i % len(users)]}").raise_for_status()
            times.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "max_ms": max(times)}


def run_one(flavor: str, n: int, base: Path, timeout: float) -> dict[str, Any]:
    homes = base / "homes" / "{username}"
    hub = HubProcess(base, extra_config=COMMON_CONFIG + FLAVOR_CONFIG[flavor].format(homes=str(homes)))
    load_before = os.getloadavg()
    hub.start()
    try:
        users = [f"u{i:03d}" for i in range(n)]
        ready = spawn_all(hub, users, timeout)
        time.sleep(2)  # let start-up allocations settle
        procs = server_processes(hub)
        idle = [procs[u].memory_info().rss / MB for u in users if u in procs]
        start_kernels(hub, users)
        time.sleep(2)
        procs = server_processes(hub)
        busy = [procs[u].memory_info().rss / MB for u in users if u in procs]
        kernels = [kernel_rss(procs[u]) for u in users if u in procs]
        latency = hub_api_latency(hub, users)
        late = spawn_one_more(hub, n, timeout)
        row = {
            "flavor": flavor, "users": n,
            "ready_s": {"median": statistics.median(ready.values()), "p95": percentile(list(ready.values()), 95),
                        "max": max(ready.values())},
            "ready_one_more_s": {"median": statistics.median(late), "all": [round(t, 3) for t in late]},
            "server_rss_idle_mb": {"median": statistics.median(idle), "max": max(idle)} if idle else None,
            "server_rss_with_kernel_mb": {"median": statistics.median(busy), "max": max(busy)} if busy else None,
            "kernel_rss_mb": {"median": statistics.median(kernels)} if kernels else None,
            "hub_api": latency,
            "loadavg_before": [round(x, 1) for x in load_before],
            "loadavg_after": [round(x, 1) for x in os.getloadavg()],
        }
        return row
    except Exception:
        # The folder (and its hub log) is deleted after the run: keep the log for the post-mortem.
        saved = Path(tempfile.gettempdir()) / f"hubscale-{flavor}-{n}-failed-hub.log"
        saved.write_text(hub.log())
        print(f"hub log of the failed run: {saved}", flush=True)
        raise
    finally:
        hub.stop()


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Hub scale: zasperhub-singleuser vs stock jupyterhub-singleuser",
        "",
        (f"Machine: {platform.machine()}, {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total // MB} MB RAM; "
         f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}. `python -m benchmarks.hub_scale`."),
        "",
        "| server | users | ready median (s) | ready p95 (s) | one more user ready (s) | server RSS idle (MB) | server RSS with kernel (MB) | kernel RSS (MB) | hub API p50 / p99 (ms) | load avg (1 min) before → after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    failed = [r for r in rows if "error" in r]
    for r in rows:
        if "error" in r:
            continue
        idle = r["server_rss_idle_mb"] or {}
        busy = r["server_rss_with_kernel_mb"] or {}
        kern = r["kernel_rss_mb"] or {}
        lines.append(
            f"| {r['flavor']} | {r['users']} | {r['ready_s']['median']:.2f} | {r['ready_s']['p95']:.2f} | "
            f"{r.get('ready_one_more_s', {}).get('median', float('nan')):.2f} | "
            f"{idle.get('median', float('nan')):.1f} | {busy.get('median', float('nan')):.1f} | {kern.get('median', float('nan')):.1f} | "
            f"{r['hub_api']['p50_ms']:.1f} / {r['hub_api']['p99_ms']:.1f} | "
            f"{r.get('loadavg_before', [float('nan')])[0]:.1f} → {r.get('loadavg_after', [float('nan')])[0]:.1f} |"
        )
    lines += ["", "Ready: from the spawn request to the hub reporting the server ready, all users started at once.",
              "One more user: the median of three users started one at a time while all N users have their kernels running.",
              "RSS: the user's server process only; its kernel (the same ipykernel for both) is listed apart."]
    for r in failed:
        lines.append(f"\nNot measured: {r['flavor']} with {r['users']} users failed: {r['error']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", default="1,10,50", help="comma-separated user counts")
    parser.add_argument("--flavors", default="zasper,stock", help="zasper,stock")
    parser.add_argument("--spawn-timeout", type=float, default=400)
    parser.add_argument("--max-minutes", type=float, default=60, help="skip configurations not started by then")
    parser.add_argument("--out", default=str(RESULTS / "hub_scale"), help="output path without extension")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so each hub (and its servers) is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    deadline = time.monotonic() + args.max_minutes * 60
    for n in [int(x) for x in args.users.split(",")]:
        for flavor in args.flavors.split(","):
            if time.monotonic() > deadline:
                print(f"-- skipping {flavor}, {n} users: --max-minutes spent", flush=True)
                continue
            with tempfile.TemporaryDirectory(prefix=f"hubscale-{flavor}-{n}-") as tmp:
                print(f"-- {flavor}, {n} users", flush=True)
                try:
                    row = run_one(flavor, n, Path(tmp), args.spawn_timeout)
                except (RuntimeError, httpx.HTTPError, OSError) as e:
                    # Keep the other configurations' numbers; say what failed.
                    row = {"flavor": flavor, "users": n, "error": str(e).splitlines()[0][:300],
                           "loadavg_after": [round(x, 1) for x in os.getloadavg()]}
                print(json.dumps(row), flush=True)
                rows.append(row)
                # Written after every configuration: an interrupted run keeps what it measured.
                out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
                out.with_suffix(".md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
