"""The harness's `/api/status` probe says why a slow probe was slow.

A real HTTP server process answers slowly in three ways: sleeping in its
handler, burning CPU in it, and burning a little CPU while a busy process at
a higher priority shares its one CPU.  The probe must attribute each: not
running, running, and waiting for a CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import pytest

from benchmarks.monitor import StatusProbe, main_thread_schedstat
from benchmarks.servers import free_port

pytestmark = pytest.mark.skipif(main_thread_schedstat(os.getpid()) is None, reason="needs /proc/PID/schedstat")

SERVER = textwrap.dedent(
    """
    import http.server, os, sys, time
    mode, port = sys.argv[1], int(sys.argv[2])
    if mode == "starved":
        os.sched_setaffinity(0, {0})
        os.nice(19)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if mode == "sleep":
                time.sleep(0.4)
            else:
                # CPU time, not wall time: starved, 30 ms of it takes far longer.
                end = time.thread_time() + (0.4 if mode == "busy" else 0.03)
                while time.thread_time() < end:
                    pass
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """
)
HOG = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"


def start(mode: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(port)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/ready", timeout=30)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the test server did not start")


def slowest_probe(mode: str, probes: int = 2) -> dict[str, float]:
    proc, url = start(mode)
    try:
        probe = StatusProbe(url, "token", interval=0.01, timeout=30, pid=proc.pid, slow_s=0.25)
        probe.start()
        deadline = time.monotonic() + 60
        while len(probe.latencies) < probes and time.monotonic() < deadline:
            time.sleep(0.05)
        probe.stop()
        summary = probe.summary()
    finally:
        proc.kill()
        proc.wait()
    assert summary["n"] >= probes and summary["slowest"] is not None, summary
    assert len(summary["slow_probes"]) >= probes
    return summary["slowest"]


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    yield
    hog.kill()
    hog.wait()


def test_a_server_sleeping_in_its_handler_neither_ran_nor_waited() -> None:
    slowest = slowest_probe("sleep")
    assert slowest["ms"] >= 350
    assert slowest["server_ran_ms"] < 100 and slowest["server_waited_ms"] < 100, slowest


def test_a_server_busy_in_its_handler_ran() -> None:
    slowest = slowest_probe("busy")
    assert slowest["server_ran_ms"] >= 300, slowest


def test_a_server_kept_off_the_cpu_waited(cpu_hog: None) -> None:
    slowest = slowest_probe("starved")
    assert slowest["server_waited_ms"] >= 200 and slowest["server_waited_ms"] > 3 * slowest["server_ran_ms"], slowest


def test_the_report_names_the_slowest_probe() -> None:
    from benchmarks.report import _slowest_probe

    assert _slowest_probe(None) == "" and _slowest_probe({"ms": 300.0}) == ""
    text = _slowest_probe({"ms": 812.5, "server_ran_ms": 9.0, "server_waited_ms": 790.2})
    assert text == "; slowest 812.5 ms: server ran 9.0 ms, waited 790.2 ms for a CPU"
