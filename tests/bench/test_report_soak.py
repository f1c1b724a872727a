"""The report's soak and recovery summaries, from synthetic run records (no servers)."""

from __future__ import annotations

from benchmarks.report import markdown, recovery_lines, rss_by_minute, soak_lines


def _record(server: str, rss: list[float], step: float = 20.0, window: float = 300) -> dict:
    samples = [{"t": 5.0, "phase": "setup", "server_rss_mb": 999.0}]
    samples += [{"t": 10.0 + i * step, "phase": "load", "server_rss_mb": v} for i, v in enumerate(rss)]
    samples += [{"t": 10.0 + len(rss) * step, "phase": "after", "server_rss_mb": 999.0}]
    return {"server": server, "scenario": "saturation", "kernels": 64, "rate": 10, "wire": "v1", "window_s": window,
            "samples": samples, "rss_after_delete_mb": 45.0, "status_probe_ms": {"p50": 12.0, "max": 80.0, "failures": 0},
            "result": {"recovery": {"kernels": 64, "answered_within_limit": 64, "limit_s": 2.0, "slowest_s": 0.8}}}


def test_rss_by_minute_takes_each_minutes_max_of_the_load_phase_only():
    # Samples every 20 s: minutes hold 3, 3 and 1 samples; setup/after samples are ignored.
    rec = _record("zasperhub", [50, 60, 55, 61, 62, 58, 63])
    assert rss_by_minute(rec) == [60.0, 62.0, 63.0]
    assert rss_by_minute({"samples": []}) == []


def test_soak_lines_report_growth_after_the_ramp_up_and_skip_short_runs():
    flat = _record("zasperhub", [40, 64, 65, 65, 66, 65, 65, 66, 65])
    growing = _record("jupyter-server", [100, 200, 300, 400, 500, 600, 700, 800, 900])
    short = _record("zasperhub", [1, 2, 3], window=30)
    text = "\n".join(soak_lines([flat, growing, short]))
    assert "| zasperhub | 64×10 | v1 | 3 | 65.0 66.0 66.0 | 0.0 |" in text
    assert "| jupyter-server | 64×10 | v1 | 3 | 300.0 600.0 900.0 | 300.0 |" in text
    assert text.count("| zasperhub |") == 1  # the 30 s run is not a soak


def test_recovery_line_and_markdown_include_both_servers():
    recs = [_record("zasperhub", [60, 61]), _record("jupyter-server", [300, 400])]
    line = "\n".join(recovery_lines(recs))
    assert "zasperhub: 64/64 within 2.0 s (slowest 0.8 s), RSS after delete 45.0 MB" in line
    assert "jupyter-server: 64/64" in line
    run = {"started": "now", "duration_s": 1, "command": "x", "machine": {}, "versions": {}, "records": recs}
    assert "Soak: server RSS" in markdown(run)
