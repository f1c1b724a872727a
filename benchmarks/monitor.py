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


def cpu_seconds(proc: psutil.Process) -> float:
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


class StatusProbe(threading.Thread):
    """GET /api/status every ``interval`` s; records latency and failures."""

    def __init__(self, url: str, token: str, interval: float = 0.5, timeout: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.url = url.rstrip("/") + "/api/status"
        self.headers = {"Authorization": f"token {token}"}
        self.interval = interval
        self.timeout = timeout
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers=self.headers, timeout=self.timeout) as http:
            while not self._halt.is_set():
                start = time.perf_counter()
                try:
                    code = http.get(self.url).status_code
                    if code == 200:
                        self.latencies.append(time.perf_counter() - start)
                    else:
                        self.failures.append(f"HTTP {code}")
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(self.timeout + 2)

    def summary(self) -> dict[str, Any]:
        return {**percentiles(self.latencies), "failures": len(self.failures)}
