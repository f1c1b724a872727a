"""Resource sampling (psutil) and the ``/api/status`` probe, run in threads of
the orchestrator process so they never compete with the load client's loop."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import psutil

from benchmarks.stats import percentiles

MB = 1024 * 1024


def _cpu_clock(pid: int) -> int:
    """The id of `pid`'s process-wide CPU clock, as Linux's clock_getcpuclockid(3) makes it.

    Python does not expose clock_getcpuclockid; the id is (~pid << 3) | CPUCLOCK_SCHED.
    """
    return ((~pid) << 3) | 2


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds `pid` has run (every thread, exited ones too), to the nanosecond; None if unreadable.

    Why not psutil's user + system: those count in clock ticks (10 ms here),
    and at 2 kernels × 10/s a 30 s window is ~25 ticks of server CPU, so one
    tick is 4 % of the figure being compared.
    """
    if not hasattr(time, "clock_gettime_ns"):
        return None
    try:
        return time.clock_gettime_ns(_cpu_clock(pid)) / 1e9
    except (OSError, OverflowError):
        return None


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU seconds of `proc` so far (nanosecond clock where Linux has it, else psutil's ticks); 0 if gone."""
    precise = process_cpu_seconds(proc.pid)
    if precise is not None:
        return precise
    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


class CpuMeter:
    """Cumulative CPU of the server, its kernels (descendants) and the client."""

    def __init__(self, server_pid: int, client_pid: int | None = None) -> None:
        self.server = psutil.Process(server_pid)
        self.client = psutil.Process(client_pid) if client_pid else None
        self.kernels: dict[int, psutil.Process] = {}
        self.start: dict[str, Any] | None = None

    def _kernels(self) -> dict[int, float]:
        try:
            for child in self.server.children(recursive=True):
                self.kernels.setdefault(child.pid, child)
        except psutil.Error:
            pass
        return {pid: cpu_seconds(p) for pid, p in self.kernels.items()}

    def snapshot(self) -> dict[str, Any]:
        return {"t": time.monotonic(), "server": cpu_seconds(self.server), "kernels": self._kernels(),
                "client": cpu_seconds(self.client) if self.client else 0.0}

    def begin(self) -> None:
        self.start = self.snapshot()

    def end(self) -> dict[str, float]:
        """CPU seconds used since ``begin`` (kernels: only those alive at both ends)."""
        assert self.start is not None
        stop = self.snapshot()
        first = self.start["kernels"]
        kernels = sum(v - first[pid] for pid, v in stop["kernels"].items() if pid in first and v >= first[pid])
        elapsed = stop["t"] - self.start["t"]
        return {"elapsed_s": round(elapsed, 3), "server_cpu_s": round(stop["server"] - self.start["server"], 3),
                "kernels_cpu_s": round(kernels, 3), "client_cpu_s": round(stop["client"] - self.start["client"], 3)}


class Sampler(threading.Thread):
    """Time series of server RSS/CPU%, kernels' CPU% and the client's CPU%."""

    def __init__(self, server_pid: int, client_pid: int | None, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.meter = CpuMeter(server_pid, client_pid)
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.phase = "setup"
        self._halt = threading.Event()

    def run(self) -> None:
        prev = self.meter.snapshot()
        t0 = prev["t"]
        psutil.cpu_percent(None)  # prime the machine-wide counter
        while not self._halt.wait(self.interval):
            cur = self.meter.snapshot()
            dt = cur["t"] - prev["t"] or 1e-9
            try:
                rss = self.meter.server.memory_info().rss
            except psutil.Error:
                break
            kcpu = sum(max(0.0, v - prev["kernels"].get(pid, v)) for pid, v in cur["kernels"].items())
            self.samples.append({
                "t": round(cur["t"] - t0, 3), "phase": self.phase, "server_rss_mb": round(rss / MB, 2),
                "server_cpu_pct": round(100 * (cur["server"] - prev["server"]) / dt, 1),
                "kernels_cpu_pct": round(100 * kcpu / dt, 1),
                "client_cpu_pct": round(100 * max(0.0, cur["client"] - prev["client"]) / dt, 1),
                # All cores, all processes: shows other work competing with the run.
                "machine_cpu_pct": round(psutil.cpu_percent(None) * (psutil.cpu_count() or 1), 1),
            })
            prev = cur

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def machine_busy(self, phase: str = "load") -> float | None:
        """Mean machine-wide CPU % (100 per core) during ``phase``."""
        values = [s["machine_cpu_pct"] for s in self.samples if s["phase"] == phase and "machine_cpu_pct" in s]
        return round(sum(values) / len(values), 1) if values else None

    def rss_summary(self, phase: str = "load") -> dict[str, float | None]:
        values = [s["server_rss_mb"] for s in self.samples if s["phase"] == phase]
        if not values:
            return {"max": None, "mean": None, "last": None, "first_tenth": None, "last_tenth": None}
        # Mean of the first and last tenth of the phase: is RSS flat or growing?
        tenth = max(1, len(values) // 10)
        return {"max": max(values), "mean": round(sum(values) / len(values), 2), "last": values[-1],
                "first_tenth": round(sum(values[:tenth]) / tenth, 2), "last_tenth": round(sum(values[-tenth:]) / tenth, 2)}


def main_thread_schedstat(pid: int) -> tuple[int, int] | None:
    """(ns on a CPU, ns runnable but waiting for one) of the process's main thread so far.

    From ``/proc/PID/schedstat`` (Linux); None where it is not available.  A
    wait is added when it ends, so read it again after the thread has run.
    """
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            ran, waited = f.read().split()[:2]
        return int(ran), int(waited)
    except (OSError, ValueError):
        return None


class StatusProbe(threading.Thread):
    """GET /api/status every ``interval`` s; records latency and failures.

    With the server's ``pid``, each slow probe (over ``slow_s``) also records
    what the server's main thread (its event loop) did meanwhile: how long it
    ran, and how long it was runnable but waited for a CPU.  That tells a
    server busy with its own work from one the scheduler kept off the CPU.
    """

    #: Slow probes kept with their attribution (the slowest is always kept).
    MAX_SLOW = 20

    def __init__(self, url: str, token: str, interval: float = 0.5, timeout: float = 10.0,
                 pid: int | None = None, slow_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.url = url.rstrip("/") + "/api/status"
        self.headers = {"Authorization": f"token {token}"}
        self.interval = interval
        self.timeout = timeout
        self.pid = pid
        self.slow_s = slow_s
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.slow: list[dict[str, float]] = []
        self.slowest: dict[str, float] | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=self.timeout) as http:
            while not self._halt.is_set():
                before = main_thread_schedstat(self.pid) if self.pid else None
                start = time.perf_counter()
                try:
                    code = http.get(self.url).status_code
                    if code == 200:
                        self._record(time.perf_counter() - start, before)
                    else:
                        self.failures.append(f"HTTP {code}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self._halt.wait(self.interval)

    def _record(self, latency: float, before: tuple[int, int] | None) -> None:
        self.latencies.append(latency)
        if latency < self.slow_s:
            return
        probe = {"ms": round(latency * 1000, 1)}
        after = main_thread_schedstat(self.pid) if self.pid else None
        if before is not None and after is not None:
            probe["server_ran_ms"] = round((after[0] - before[0]) / 1e6, 1)
            probe["server_waited_ms"] = round((after[1] - before[1]) / 1e6, 1)
        if len(self.slow) < self.MAX_SLOW:
            self.slow.append(probe)
        if self.slowest is None or latency * 1000 > self.slowest["ms"]:
            self.slowest = probe

    def stop(self) -> None:
        self._halt.set()
        self.join(self.timeout + 2)

    def summary(self) -> dict[str, Any]:
        return {**percentiles(self.latencies), "failures": len(self.failures), "slowest": self.slowest,
                "slow_probes": self.slow}
