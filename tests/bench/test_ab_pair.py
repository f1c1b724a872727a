"""The paired A/B harness and the nanosecond CPU clock the benchmarks read (correctness, not timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from benchmarks.ab_pair import environment
from benchmarks.monitor import cpu_seconds, process_cpu_seconds

ROOT = Path(__file__).resolve().parents[2]


def test_another_process_cpu_is_read_to_the_nanosecond() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time\nt=time.process_time()\n"
                              "while time.process_time()-t<0.3: pass\ntime.sleep(30)"])
    try:
        proc = psutil.Process(child.pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and sum(proc.cpu_times()[:2]) < 0.3:
            time.sleep(0.05)
        precise = process_cpu_seconds(child.pid)
        assert precise is not None
        ticks = proc.cpu_times()
        # The same CPU time, without the 10 ms steps of user + system.
        assert abs(precise - (ticks.user + ticks.system)) < 0.05
        # Nanoseconds, not ticks: an exact multiple of 10 ms would be a one-in-10^7 coincidence.
        assert abs(precise * 100 - round(precise * 100)) > 1e-9
        assert cpu_seconds(proc) >= precise
    finally:
        child.kill()
        child.wait()
    assert process_cpu_seconds(child.pid) is None  # gone: unreadable, not an error


def test_environment_sets_and_restores() -> None:
    os.environ.pop("ZH_AB_TEST", None)
    os.environ["ZH_AB_KEEP"] = "old"
    try:
        with environment(["ZH_AB_TEST=1", "ZH_AB_KEEP=new=x"]):
            assert os.environ["ZH_AB_TEST"] == "1" and os.environ["ZH_AB_KEEP"] == "new=x"
        assert "ZH_AB_TEST" not in os.environ and os.environ["ZH_AB_KEEP"] == "old"
    finally:
        os.environ.pop("ZH_AB_KEEP", None)


def test_two_servers_are_measured_in_the_same_windows() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab_pair", "--kernels", "1", "--windows", "2", "--window", "1.5",
         "--b-env", "ZASPERHUB_NATIVE=0"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=True)
    report = json.loads(out.stdout[out.stdout.index("{"):])
    for side in ("a", "b"):
        values = report[side]["ms_per_round_trip"]
        assert len(values) == 2 and all(v > 0 for v in values)
    assert report["b"]["env"] == ["ZASPERHUB_NATIVE=0"]
    assert report["b_over_a_mean"] > 0 and report["b_over_a_paired_median"] > 0
