"""Where the server's CPU goes per kernel round trip: per thread, per syscall, per wake-up.

Starts one zasperhub server (the harness's `RunningServer`), connects N
kernels over one wire format, measures an idle phase (connected, silent) and
then an open-loop `2+2` phase at R requests/s per kernel, and reports for
each phase the server's CPU split by thread (the event loop thread vs
libzmq's I/O thread), CPU and context switches per round trip.  Options add
one instrument each to the load phase: `--strace` (syscalls per round trip
and thread; exact counts, inflated times), `--perf` (perf record -g),
`--pyspy`, `--cprofile` (the whole server under cProfile: exact call counts;
diff two window lengths to get calls per round trip), `--gc-disable`.  The
kernel transport follows `ZASPERHUB_KERNEL_TRANSPORT` (pyzmq or zmtp)::

    python -m benchmarks.cpu_profile --kernels 2 --rate 10 --wire legacy --window 20 --strace
    ZASPERHUB_KERNEL_TRANSPORT=pyzmq python -m benchmarks.cpu_profile --kernels 16 --rate 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks.loadgen import ServerAPI
from benchmarks.monitor import cpu_seconds
from benchmarks.profiling import hot_spots
from benchmarks.servers import TOKEN, BenchEnv, RunningServer
from benchmarks.stats import LoadStats
from benchmarks.workloads import open_kernels, open_loop, teardown


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per thread, keyed by thread name (`comm`) and id."""
    out: dict[str, tuple[float, float]] = {}
    for t in psutil.Process(pid).threads():
        try:
            with open(f"/proc/{pid}/task/{t.id}/comm") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        key = "main" if t.id == pid else f"{name}:{t.id}"
        out[key] = (t.user_time, t.system_time)
    return out


def context_switches(pid: int) -> int:
    """Voluntary plus involuntary context switches of all the process's threads so far."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def diff_threads(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, dict[str, float]]:
    """CPU milliseconds per thread spent between two samples (threads idle in both are left out)."""
    result: dict[str, dict[str, float]] = {}
    for key, (user, system) in after.items():
        u0, s0 = before.get(key, (0.0, 0.0))
        du, ds = (user - u0) * 1000, (system - s0) * 1000
        if du + ds > 0:
            result[key] = {"user_ms": round(du, 1), "sys_ms": round(ds, 1)}
    return result


class Strace:
    """`strace -f` attached to the server for one phase: syscall counts per thread."""

    def __init__(self, pid: int, prefix: str) -> None:
        self.pid = pid
        self.prefix = prefix
        # -ff: one output file per thread, so the event loop thread and
        # libzmq's I/O thread can be told apart.
        self.proc = subprocess.Popen(["strace", "-f", "-ff", "-qq", "-p", str(pid), "-o", prefix],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attach before the phase starts

    def stop(self) -> dict[str, dict[str, int]]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(30)
        result: dict[str, dict[str, int]] = {}
        directory, base = os.path.split(self.prefix)
        for name in os.listdir(directory):
            if not name.startswith(base + "."):
                continue
            tid = name.rsplit(".", 1)[1]
            calls: dict[str, int] = {}
            with open(os.path.join(directory, name), errors="replace") as f:
                for line in f:
                    m = re.match(r"(\w+)\(", line)
                    if m:
                        calls[m.group(1)] = calls.get(m.group(1), 0) + 1
                        # A wait with a non-zero timeout is where the thread can sleep: a wake-up.
                        w = re.match(r"(?:epoll_wait|epoll_pwait|poll)\(.*, (-?\d+)\) = ", line)
                        if w and w.group(1) != "0":
                            calls["(sleeping waits)"] = calls.get("(sleeping waits)", 0) + 1
            if os.environ.get("CPU_PROFILE_KEEP_STRACE"):
                os.replace(os.path.join(directory, name), f"/tmp/strace-{tid}.txt")
            else:
                os.unlink(os.path.join(directory, name))
            result["main" if tid == str(self.pid) else f"thread:{tid}"] = calls
        return result


async def measure(args: argparse.Namespace, server: RunningServer) -> dict[str, Any]:
    api = ServerAPI(server.url, TOKEN)
    stats = LoadStats()
    clients, sessions = await open_kernels(api, args.kernels, args.wire, "python3", stats)
    pid = server.pid
    proc = psutil.Process(pid)
    report: dict[str, Any] = {"kernels": args.kernels, "rate": args.rate, "wire": args.wire, "window_s": args.window}
    await asyncio.sleep(2)  # let start-up traffic settle

    # Idle: connected, silent (the harness's /api/status probes are not made here).
    t0, c0 = thread_times(pid), cpu_seconds(proc)
    await asyncio.sleep(args.idle)
    t1, c1 = thread_times(pid), cpu_seconds(proc)
    idle_ms = (c1 - c0) * 1000
    report["idle"] = {"cpu_ms_per_s": round(idle_ms / args.idle, 2), "threads": diff_threads(t0, t1)}

    tracer = Strace(pid, f"/tmp/zh-strace-{pid}") if args.strace else None
    switches0 = context_switches(pid)
    spy = perf = None
    if args.perf:
        # Popen returns at once; the instruments are started and stopped outside the load.
        perf = subprocess.Popen(  # noqa: ASYNC220
            ["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o", args.perf],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.pyspy:
        # --idle off: samples of a thread blocked in epoll_wait are left out.
        spy = subprocess.Popen(  # noqa: ASYNC220
            ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw",
             "--nonblocking", *(["--native"] if args.native else []), "-o", args.pyspy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0, c0 = thread_times(pid), cpu_seconds(proc)
    start = time.perf_counter() + 0.05
    end = start + args.window
    n, rate = len(clients), args.rate
    await asyncio.gather(*(open_loop(c, rate, start + i / (n * rate), end, stats) for i, c in enumerate(clients)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not stats.sent == stats.replies == stats.idles:
        await asyncio.sleep(0.02)
    t1, c1 = thread_times(pid), cpu_seconds(proc)
    syscalls = tracer.stop() if tracer is not None else {}
    for recorder in (perf, spy):
        if recorder is not None:
            recorder.send_signal(signal.SIGINT)
            recorder.wait(30)
    if spy is not None:
        report["pyspy"] = hot_spots(Path(args.pyspy), top=25)
    trips = max(1, stats.replies)
    load_ms = (c1 - c0) * 1000
    threads = diff_threads(t0, t1)
    switches = context_switches(pid)
    report["load"] = {
        "round_trips": stats.replies, "frames": stats.frames,
        "cpu_ms": round(load_ms, 1), "cpu_ms_per_round_trip": round(load_ms / trips, 3),
        "cpu_s_per_1k": round(load_ms / trips, 3),
        "threads_ms_per_round_trip": {k: round((v["user_ms"] + v["sys_ms"]) / trips, 3) for k, v in threads.items()},
        "threads": threads,
        "context_switches_per_round_trip": round((switches - switches0) / trips, 2),
        # Latency only as a sanity check: on a shared machine it follows the load.
        "reply_p50_ms": round(1000 * sorted(stats.reply_latency)[len(stats.reply_latency) // 2], 2) if stats.reply_latency else None,
    }
    if syscalls:
        report["load"]["syscalls_per_round_trip"] = {
            thread: {k: round(v / trips, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:10]}
            for thread, calls in syscalls.items()
        }
    await teardown(api, clients, sessions, stats)
    await api.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernels", type=int, default=2)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--wire", default="legacy", choices=["legacy", "v1"])
    parser.add_argument("--window", type=float, default=20)
    parser.add_argument("--idle", type=float, default=10, help="seconds of the idle phase")
    parser.add_argument("--strace", action="store_true", help="count syscalls during the load phase")
    parser.add_argument("--pyspy", default="", help="py-spy raw output file for the load phase")
    parser.add_argument("--perf", default="", help="perf record -g output file for the load phase")
    parser.add_argument("--cprofile", default="", help="run the server under cProfile, stats to this file")
    parser.add_argument("--gc-disable", action="store_true", help="run the server with the cyclic GC disabled")
    parser.add_argument("--native", action="store_true", help="py-spy --native (C frames)")
    parser.add_argument("--server-args", default="", help="extra zasperhub command-line arguments")
    args = parser.parse_args()
    env = BenchEnv()
    server = RunningServer("zasperhub", env, args.server_args.split())
    if args.gc_disable:
        # Upper bound of what the cyclic garbage collector costs the server.
        server.cmd[1:3] = ["-c", "import gc, runpy; gc.disable(); runpy.run_module('zasperhub.platform.cli', run_name='__main__')"]
    if args.cprofile:
        # Deterministic call counts per round trip (the timings are inflated by cProfile itself).
        server.cmd[1:1] = ["-m", "cProfile", "-o", args.cprofile]
    server.start()
    try:
        report = asyncio.run(measure(args, server))
    finally:
        server.stop()
    report["loadavg"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
