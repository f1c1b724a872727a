"""Smoke test of the benchmark harness against the real server (correctness, not timing).

Runs ``python -m benchmarks.run --quick`` against ``zasperhub`` with real
ipykernel kernels and the benchmark echo kernel, then checks the JSON and
markdown it writes and that every request was answered.  Also checks the
client-side wire codecs and the harness's handling of bad arguments.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.scenarios import parse_configs
from benchmarks.wire import LegacyCodec, V1Codec, make_codec

ROOT = Path(__file__).resolve().parents[2]


def run_harness(*args: str, timeout: float = 280) -> subprocess.CompletedProcess[str]:
    # A session of its own: the harness raises its scheduler group's priority
    # (workloads.raise_priority), which must not outlive it in the test run's group.
    return subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, start_new_session=True)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    proc = run_harness("--servers", "zasperhub", "--scenarios", "steady,ceiling", "--configs", "2x10",
                       "--wires", "legacy,v1", "--quick", "--out", str(out), "--tag", "smoke")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((out / "smoke.json").read_text())
    run["_out"] = out
    return run


def test_run_metadata(quick_run: dict) -> None:
    assert quick_run["quick"] is True
    assert quick_run["machine"]["cpus"] >= 1
    assert quick_run["versions"]["zasperhub"]
    assert "benchmarks.run" in quick_run["command"]
    keys = {(r["scenario"], r["wire"]) for r in quick_run["records"]}
    assert keys == {("steady", "legacy"), ("steady", "v1"), ("ceiling", "legacy"), ("ceiling", "v1")}


def test_every_request_answered(quick_run: dict) -> None:
    for rec in quick_run["records"]:
        assert "error" not in rec, rec.get("error")
        res = rec["result"]
        assert res["sent"] > 0
        assert res["replies"] == res["sent"] == res["idles"], res
        assert res["unanswered"] == 0 and res["iopub_idle_missing"] == 0
        assert res["dropped_ws"] == 0 and res["dead_kernels"] == 0 and res["decode_errors"] == 0
        assert res["recovery"]["answered"] == res["recovery"]["kernels"] == rec["kernels"]
        assert res["teardown"]["deleted"] == res["teardown"]["sessions"]
        # Every reply was counted as a frame, with the iopub messages around it.
        assert res["frames_by_type"]["shell/execute_reply"] == res["replies"]
        assert res["frames_by_type"]["iopub/execute_result"] == res["replies"]
        assert res["reply_latency_ms"]["n"] == res["replies"]
        assert rec["server_alive"] is True


def test_steady_open_loop_rate(quick_run: dict) -> None:
    steady = [r for r in quick_run["records"] if r["scenario"] == "steady"]
    for rec in steady:
        # Open loop: 2 kernels x 10/s over the window, whatever the replies do.
        assert rec["result"]["sent"] == pytest.approx(2 * 10 * rec["window_s"], abs=2)


def test_measurements_present(quick_run: dict) -> None:
    for rec in quick_run["records"]:
        assert rec["cold_start_s"] > 0 and rec["idle_rss_mb"] > 0
        assert rec["cpu"]["server_cpu_s"] >= 0 and rec["cpu"]["client_cpu_s"] > 0
        assert rec["server_cpu_s_per_1000"] is not None
        assert rec["status_probe_ms"]["n"] >= 1 and rec["status_probe_ms"]["failures"] == 0
        assert rec["rss_load_mb"]["max"] > 0
        assert any(s["phase"] == "load" for s in rec["samples"])


def test_markdown_and_plots_written(quick_run: dict) -> None:
    out: Path = quick_run["_out"]
    md = (out / "smoke.md").read_text()
    assert "| steady | 2×10 | legacy |" in md and "| steady | 2×10 | v1 |" in md
    assert "Server ceiling" in md and "Errors:" not in md
    assert (out / "kernels-latest.json").read_text() == (out / "smoke.json").read_text()
    for name in ("cpu", "rss", "throughput", "latency"):
        assert (out / f"smoke-{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- pieces that need no server -------------------------------------------------

def test_v1_codec_layout() -> None:
    codec = V1Codec()
    frame = codec.encode("shell", {"msg_id": "a", "msg_type": "execute_request"}, {"code": "2+2"})
    (count,) = struct.unpack_from("<Q", frame)
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    assert offsets[0] == 8 * (count + 1) and offsets[-1] == len(frame)
    assert frame[offsets[0]:offsets[1]] == b"shell"
    assert json.loads(frame[offsets[4]:offsets[5]]) == {"code": "2+2"}


def test_v1_decode_status_and_bad_frames() -> None:
    codec = V1Codec()
    parts = [b"iopub", b'{"msg_type":"status","msg_id":"x"}', b'{"msg_id":"p1"}', b"{}", b'{"execution_state":"idle"}']
    offsets = [8 * 7]
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    msg = codec.decode(struct.pack("<7Q", 6, *offsets) + b"".join(parts))
    assert (msg.channel, msg.msg_type, msg.parent_msg_id, msg.execution_state) == ("iopub", "status", "p1", "idle")
    with pytest.raises(ValueError):
        codec.decode(b"\x01" + b"\x00" * 7)
    with pytest.raises(ValueError):
        codec.decode("text frame")


def test_legacy_codec_text_and_binary_framing() -> None:
    codec = LegacyCodec()
    text = codec.encode("shell", {"msg_id": "m"}, {"code": "2+2"})
    assert json.loads(text)["channel"] == "shell"
    body = json.dumps({"channel": "iopub", "header": {"msg_type": "stream"}, "parent_header": {"msg_id": "m"},
                       "content": {"text": "hello"}}).encode()
    # nbufs=2: the JSON message, then one binary buffer.
    framed = struct.pack("!I", 2) + struct.pack("!II", 12, 12 + len(body)) + body + b"buf"
    msg = codec.decode(framed)
    assert (msg.channel, msg.msg_type, msg.parent_msg_id, msg.stream_chars) == ("iopub", "stream", "m", 5)


def test_bad_inputs_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="unknown wire format"):
        make_codec("v2")
    with pytest.raises(ValueError, match="KERNELSxRATE"):
        parse_configs("8by10")
    with pytest.raises(ValueError, match="kernels must be"):
        parse_configs("0x10")
    proc = run_harness("--servers", "nope", timeout=60)
    assert proc.returncode == 2 and "unknown server" in proc.stderr
    proc = run_harness("--configs", "8x", timeout=60)
    assert proc.returncode == 2 and "bad config" in proc.stderr
    proc = run_harness("--repeat", "0", timeout=60)
    assert proc.returncode == 2 and "--repeat must be at least 1" in proc.stderr
