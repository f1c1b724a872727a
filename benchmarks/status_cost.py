"""Server CPU per `GET /api/status`, zasperhub and Jupyter Server side by side.

Monitors, JupyterHub and this harness (`monitor.StatusProbe`, twice a second)
poll `/api/status`; at 2 kernels × 10 requests/s that poll is a fair share of
a server's CPU per round trip.  This starts each server fresh (no kernels),
sends requests over one keep-alive connection with the token in the
`Authorization` header, and reports the server's CPU per request two ways:
back to back ("hot": caches warm) and 50 ms apart ("cold": what a poller on
an otherwise quiet server costs).  CPU is the process's own, read to the
nanosecond (`monitor.cpu_seconds`)::

    python -m benchmarks.status_cost --servers zasperhub,jupyter-server
"""

from __future__ import annotations

import argparse
import json
import time

import httpx
import psutil

from benchmarks.monitor import cpu_seconds
from benchmarks.servers import TOKEN, BenchEnv, RunningServer


def cost_ms(server: RunningServer, requests: int, gap_s: float) -> float:
    """The server's CPU milliseconds per request, `gap_s` apart."""
    proc = psutil.Process(server.pid)
    with httpx.Client(headers={"Authorization": f"token {TOKEN}"}, timeout=10) as http:
        url = server.url + "/api/status"
        for _ in range(20):  # connection up, code paths loaded
            http.get(url).raise_for_status()
        time.sleep(1)
        before = cpu_seconds(proc)
        for _ in range(requests):
            http.get(url).raise_for_status()
            if gap_s:
                time.sleep(gap_s)
        return 1000 * (cpu_seconds(proc) - before) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--servers", default="zasperhub,jupyter-server")
    parser.add_argument("--hot", type=int, default=2000, help="requests back to back")
    parser.add_argument("--cold", type=int, default=300, help="requests 50 ms apart")
    args = parser.parse_args()
    env = BenchEnv()
    report: dict[str, dict[str, float]] = {}
    for name in args.servers.split(","):
        server = RunningServer(name, env).start()
        try:
            time.sleep(2)  # past start-up work
            report[name] = {
                "hot_ms_per_request": round(cost_ms(server, args.hot, 0), 3),
                "cold_ms_per_request": round(cost_ms(server, args.cold, 0.05), 3),
            }
        finally:
            server.stop()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
