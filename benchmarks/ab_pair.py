"""Two zasperhub servers under the same load at the same time: an A/B of a change worth a few percent.

Why: on this shared 2-core host the server's CPU per round trip drifts by
±10 % between minutes, more than most single changes are worth, so runs of
A then B compare the minutes as much as the code.  Here A and B run
concurrently, each with its own kernels and an open-loop load of the same
rate, and the windows alternate which server's requests go first; drift hits
both alike.  Each window's B/A is one paired sample.

Give the two servers different command-line arguments (`--a-args`,
`--b-args`) or environment (`--a-env`, `--b-env`, as NAME=VALUE).  Run it
once with the same settings on both sides (an A/A run) to see the noise of
the pairing itself: in session 14 two A/A runs read 1.033 and 0.974, so a
change under ~3 % cannot be told from nothing; one is real when the B/A of
`A=old, B=new` and the A/B of the swapped run agree.

    python -m benchmarks.ab_pair --b-env ZASPERHUB_NATIVE=0 --windows 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from contextlib import contextmanager
from typing import Any, Iterator

import psutil

from benchmarks.loadgen import ServerAPI
from benchmarks.monitor import cpu_seconds
from benchmarks.servers import TOKEN, BenchEnv, RunningServer
from benchmarks.stats import LoadStats
from benchmarks.workloads import open_kernels, open_loop, teardown


@contextmanager
def environment(assignments: list[str]) -> Iterator[None]:
    """Set NAME=VALUE pairs for the duration (the server started inside inherits them)."""
    saved: dict[str, str | None] = {}
    for item in assignments:
        name, _, value = item.partition("=")
        saved[name] = os.environ.get(name)
        os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def measure(servers: list[RunningServer], args: argparse.Namespace) -> list[list[float]]:
    """CPU ms per round trip of each server, per window."""
    sides = []
    for srv in servers:
        api = ServerAPI(srv.url, TOKEN)
        stats = LoadStats()
        clients, sessions = await open_kernels(api, args.kernels, args.wire, "python3", stats)
        sides.append((api, stats, clients, sessions, psutil.Process(srv.pid)))
    await asyncio.sleep(2)  # start-up traffic settles
    results: list[list[float]] = [[] for _ in servers]
    try:
        for window in range(args.windows):
            cpu0 = [cpu_seconds(proc) for *_, proc in sides]
            replies0 = [stats.replies for _, stats, *_ in sides]
            start = time.perf_counter() + 0.05
            end = start + args.window
            loads = []
            for k, (_, stats, clients, _, _) in enumerate(sides):
                # Requests of the two servers interleave; which goes first alternates by window.
                lead = 0.5 * ((k + window) % 2)
                n = len(clients)
                loads += [open_loop(c, args.rate, start + (i + lead) / (n * args.rate), end, stats)
                          for i, c in enumerate(clients)]
            await asyncio.gather(*loads)
            await asyncio.sleep(0.5)  # the last answers arrive
            for k, (_, stats, _, _, proc) in enumerate(sides):
                trips = max(1, stats.replies - replies0[k])
                results[k].append(round((cpu_seconds(proc) - cpu0[k]) * 1000 / trips, 4))
            print(f"window {window}: A {results[0][-1]:.3f}  B {results[1][-1]:.3f} ms per round trip", flush=True)
    finally:
        for api, stats, clients, sessions, _ in sides:
            await teardown(api, clients, sessions, stats)
            await api.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=2, help="kernels per server")
    parser.add_argument("--rate", type=float, default=10, help="execute requests per second per kernel")
    parser.add_argument("--wire", default="v1", choices=["legacy", "v1"])
    parser.add_argument("--window", type=float, default=20, help="seconds per window")
    parser.add_argument("--windows", type=int, default=6)
    parser.add_argument("--a-args", default="", help="extra zasperhub arguments for A")
    parser.add_argument("--b-args", default="", help="extra zasperhub arguments for B")
    parser.add_argument("--a-env", action="append", default=[], help="NAME=VALUE for A's process")
    parser.add_argument("--b-env", action="append", default=[], help="NAME=VALUE for B's process")
    args = parser.parse_args()
    env = BenchEnv()
    servers: list[RunningServer] = []
    try:
        for extra, assignments in ((args.a_args, args.a_env), (args.b_args, args.b_env)):
            with environment(assignments):
                servers.append(RunningServer("zasperhub", env, extra.split()).start())
        a, b = asyncio.run(measure(servers, args))
    finally:
        for srv in servers:
            srv.stop()
    ratios = [y / x for x, y in zip(a, b) if x > 0]
    report: dict[str, Any] = {
        "kernels": args.kernels, "rate": args.rate, "wire": args.wire, "window_s": args.window,
        "a": {"args": args.a_args, "env": args.a_env, "ms_per_round_trip": a, "mean": round(statistics.mean(a), 4)},
        "b": {"args": args.b_args, "env": args.b_env, "ms_per_round_trip": b, "mean": round(statistics.mean(b), 4)},
        "b_over_a_mean": round(statistics.mean(b) / statistics.mean(a), 4),
        "b_over_a_paired_median": round(statistics.median(ratios), 4),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
