"""Scenario catalogue and the orchestration of one measured configuration.

``run_one`` starts a fresh server, starts the load client in its own process
(so the client's CPU is separate and measurable), samples resources while the
client works through its phases, and returns one JSON-ready record.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from benchmarks.echo_kernel import KERNEL_NAME as ECHO_KERNEL
from benchmarks.monitor import CpuMeter, Sampler, StatusProbe
from benchmarks.profiling import Profiler
from benchmarks.servers import TOKEN, BenchEnv, RunningServer
from benchmarks.workloads import client_main


@dataclass
class Scenario:
    """A named family of configurations run against every server."""

    name: str
    workload: str
    #: (kernels, rate per kernel) pairs; rate 0 means not applicable.
    configs: list[tuple[int, int]]
    kernel_name: str = "python3"
    window: float | None = None  # overrides the run's window when set
    extra: dict[str, Any] = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    "steady": Scenario("steady", "steady", [(2, 10), (8, 10), (16, 10)]),
    "idle": Scenario("idle", "steady", [(2, 0), (16, 0)]),
    "saturation": Scenario("saturation", "steady", [(32, 10), (64, 10), (16, 100)]),
    "overload": Scenario("overload", "steady", [(64, 100)], window=60),
    "ceiling": Scenario("ceiling", "steady", [(4, 0)], kernel_name=ECHO_KERNEL, extra={"inflight": 8}),
    "large_output": Scenario("large_output", "large_output", [(1, 0)], extra={"watchers": 3, "repeats": 2}),
    # 3 MB/s for the window: enough to outgrow socket buffers and a 32 MB per-client cap.
    "slow_consumer": Scenario("slow_consumer", "slow_consumer", [(4, 10)], extra={"stream_chunk": 300_000}),
    "startup": Scenario("startup", "kernel_start", [(1, 0)], extra={"repeats": 5}),
}


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"2x10,8x10"`` → ``[(2, 10), (8, 10)]``; a clear error on bad input."""
    out = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        try:
            kernels, rate = (int(x) for x in item.lower().split("x"))
        except ValueError:
            raise ValueError(f"bad config {item!r}: expected KERNELSxRATE such as 8x10") from None
        if kernels < 1 or rate < 0:
            raise ValueError(f"bad config {item!r}: kernels must be >= 1 and rate >= 0")
        out.append((kernels, rate))
    return out


class ClientFailed(RuntimeError):
    """The load client process reported an error or went silent."""


def _expect(pipe: Any, proc: BaseProcess, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pipe.poll(0.2):
            got, info = pipe.recv()
            if got == "error":
                raise ClientFailed(info["error"])
            if got != name:
                raise ClientFailed(f"expected phase {name!r}, client sent {got!r}")
            return info
        if not proc.is_alive():
            raise ClientFailed(f"client exited ({proc.exitcode}) before {name!r}")
    raise ClientFailed(f"client did not reach {name!r} within {timeout:.0f}s")


def run_one(server: str, scenario: Scenario, kernels: int, rate: int, wire: str, *, window: float,
            drain: float, env: BenchEnv, server_args: list[str], idle_wait: float = 2.0,
            profile_dir: Path | None = None) -> dict[str, Any]:
    """Measure one (server, scenario, config, wire) on a fresh server process.

    With ``profile_dir``, py-spy samples the server during the load phase.
    """
    window = scenario.window if scenario.window and window >= 30 else window
    record: dict[str, Any] = {"server": server, "scenario": scenario.name, "kernels": kernels, "rate": rate,
                              "wire": wire, "window_s": window}
    # The machine is shared: record how busy it was when this config started.
    record["loadavg_1m"] = round(os.getloadavg()[0], 2)
    srv = RunningServer(server, env, server_args)
    try:
        srv.start()
        record["cold_start_s"] = round(srv.cold_start_s or 0, 3)
        time.sleep(idle_wait)
        record["idle_rss_mb"] = srv.rss_mb()
        spec = {"workload": scenario.workload, "url": srv.url, "token": TOKEN, "kernels": kernels, "rate": rate,
                "wire": wire, "window": window, "drain": drain, "kernel_name": scenario.kernel_name, **scenario.extra}
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=client_main, args=(spec, child), daemon=True)
        proc.start()
        sampler = Sampler(srv.pid, proc.pid)
        sampler.start()
        probe = StatusProbe(srv.url, TOKEN, pid=srv.pid)
        profiler = None
        try:
            _expect(parent, proc, "ready", 120 + 5 * kernels)
            record["rss_ready_mb"] = srv.rss_mb()
            meter = CpuMeter(srv.pid, proc.pid)
            meter.begin()
            probe.start()
            sampler.phase = "load"
            if profile_dir is not None:
                profiler = Profiler(srv.pid, profile_dir / f"{server}-{scenario.name}-{kernels}x{rate}-{wire}.txt")
            parent.send("go")
            _expect(parent, proc, "loaded", 3 * window + drain + 300)
            record["cpu"] = meter.end()
            if profiler is not None:
                record["profile"] = profiler.stop()
                profiler = None
            sampler.phase = "after"
            probe.stop()
            parent.send("ok")
            record["result"] = _expect(parent, proc, "result", 300)
        finally:
            if profiler is not None:
                profiler.stop()
            if probe.is_alive():
                probe.stop()
            proc.join(10)
            if proc.is_alive():
                proc.kill()
        time.sleep(idle_wait)
        record["rss_after_delete_mb"] = srv.rss_mb()
        sampler.stop()
        record["rss_load_mb"] = sampler.rss_summary("load")
        record["machine_cpu_pct_load"] = sampler.machine_busy("load")
        record["status_probe_ms"] = probe.summary()
        record["samples"] = sampler.samples
        record["server_alive"] = srv.proc is not None and srv.proc.poll() is None
        log_text = srv.log()
        record["server_log_warnings"] = sum(1 for line in log_text.splitlines() if "WARNING" in line or line.startswith("[W"))
        record["server_log_tail"] = log_text[-3000:]
        derive(record)
    except Exception as exc:  # one failed config must not stop the run
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["server_log_tail"] = srv.log()[-2000:]
    finally:
        srv.stop()
    return record


def derive(record: dict[str, Any]) -> None:
    """Add the ratios people compare: CPU per 1,000 round trips, per core."""
    res, cpu = record.get("result", {}), record.get("cpu", {})
    replies = res.get("replies") or 0
    if cpu and replies:
        record["server_cpu_s_per_1000"] = round(1000 * cpu["server_cpu_s"] / replies, 3)
        record["kernels_cpu_s_per_1000"] = round(1000 * cpu["kernels_cpu_s"] / replies, 3)
        record["client_cpu_s_per_1000"] = round(1000 * cpu["client_cpu_s"] / replies, 3)
        if cpu["server_cpu_s"] > 0:
            record["round_trips_per_server_cpu_s"] = round(replies / cpu["server_cpu_s"], 1)
    if cpu and cpu.get("elapsed_s"):
        record["client_cpu_pct"] = round(100 * cpu["client_cpu_s"] / cpu["elapsed_s"], 1)
        record["server_cpu_pct"] = round(100 * cpu["server_cpu_s"] / cpu["elapsed_s"], 1)
