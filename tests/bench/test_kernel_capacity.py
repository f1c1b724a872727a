"""The no-server kernel-capacity reference: a real ipykernel fed directly (correctness, not timing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from benchmarks.kernel_capacity import _is_idle, _parent_id, run_config
from benchmarks.servers import BenchEnv

ROOT = Path(__file__).resolve().parents[2]


def frames(msg_type: str, parent_id: str, content: dict) -> list[bytes]:
    header = {"msg_id": "m", "msg_type": msg_type}
    return [b"kernel.x.status", b"<IDS|MSG>", b"sig", orjson.dumps(header), orjson.dumps({"msg_id": parent_id}),
            b"{}", orjson.dumps(content)]


def test_parent_and_idle_are_read_from_the_frames() -> None:
    idle = frames("status", "req-1", {"execution_state": "idle"})
    busy = frames("status", "req-1", {"execution_state": "busy"})
    result = frames("execute_result", "req-2", {"data": {"text/plain": "'idle'"}})
    assert _parent_id(idle) == "req-1" and _is_idle(idle)
    assert not _is_idle(busy)
    assert _parent_id(result) == "req-2" and not _is_idle(result)
    assert _parent_id([b"no delimiter"]) is None and not _is_idle([b"no delimiter"])
    assert _parent_id([b"<IDS|MSG>", b"sig", b"{}", b"not json"]) is None


def test_one_kernel_answers_every_request_and_its_idle() -> None:
    env = BenchEnv()
    try:
        rec = run_config(1, 10, 1.5, 10, env)
    finally:
        shutil.rmtree(env.base, ignore_errors=True)
    assert rec["sent"] >= 14
    assert rec["replies"] == rec["sent"] and rec["unanswered"] == 0
    assert rec["iopub_idle_missing"] == 0
    assert rec["replies_in_window"] >= 10
    assert rec["kernels_cpu_s_window"] > 0 and rec["kernels_cpu_ms_per_reply_window"] > 0
    # One latency per reply, each a real round trip through the kernel.
    lat = rec["reply_latency_ms"]
    assert lat["n"] == rec["replies"] and 0 < lat["p50"] <= lat["p99"] <= lat["max"]


def test_held_requests_go_out_as_the_caps_allow_and_all_are_answered() -> None:
    """Two kernels, one busy at a time, each sent its due requests in one batch: nothing lost or left unsent."""
    env = BenchEnv()
    try:
        rec = run_config(2, 20, 1.5, 10, env, max_busy=1)
        capped = run_config(1, 20, 1.0, 10, env, max_in_flight=1, max_total=1, subscribe=False)
    finally:
        shutil.rmtree(env.base, ignore_errors=True)
    assert rec["max_busy_kernels"] == 1 and rec["sent"] >= 40 and rec["held_unsent"] <= 2
    assert rec["replies"] == rec["sent"] and rec["unanswered"] == 0 and rec["iopub_idle_missing"] == 0
    assert capped["replies"] == capped["sent"] >= 10 and capped["iopub_subscribed"] is False
    assert capped["iopub_idle_missing"] == 0, "idles are not awaited when nothing is subscribed"


def test_command_writes_json_and_rejects_bad_configs(tmp_path: Path) -> None:
    bad = subprocess.run([sys.executable, "-m", "benchmarks.kernel_capacity", "--configs", "16by100"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, start_new_session=True)
    assert bad.returncode == 2 and "16by100" in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "benchmarks.kernel_capacity", "--configs", "1x5", "--window", "1",
                         "--drain", "10", "--out", str(tmp_path), "--tag", "t"], cwd=ROOT, capture_output=True,
                        text=True, timeout=120, start_new_session=True)
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    run = json.loads((tmp_path / "t.json").read_text())
    assert run["records"][0]["unanswered"] == 0 and run["records"][0]["kernels"] == 1
    assert "| 1×5 |" in (tmp_path / "t.md").read_text()


def test_raise_priority_lifts_the_client_scheduler_group() -> None:
    """A nice value only ranks threads within an autogroup: the client's group is lifted with it."""
    code = ("from benchmarks.workloads import raise_priority; n = raise_priority(); "
            "import os; ag = open('/proc/self/autogroup').read().split()[-1] "
            "if os.path.exists('/proc/self/autogroup') else 'none'; print(n, ag)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         start_new_session=True)
    assert out.returncode == 0, out.stderr
    nice, group = out.stdout.split()
    if group != "none" and int(nice) < 0:  # privileged and autogroups on: both lifted
        assert int(group) == int(nice)
