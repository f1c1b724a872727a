"""`run --repeat`: the report's per-repeat CPU ratios and their median, from synthetic records (no servers)."""

from __future__ import annotations

from benchmarks.report import markdown, repeat_lines


def _rec(server: str, repeat: int, cpu: float, wire: str = "v1") -> dict:
    return {"server": server, "scenario": "steady", "kernels": 2, "rate": 10, "wire": wire, "window_s": 30,
            "repeat": repeat, "server_cpu_s_per_1000": cpu, "result": {}}


def test_each_repeat_is_paired_with_its_own_and_the_median_ratio_is_reported() -> None:
    recs = [_rec("zasperhub", 0, 0.6), _rec("jupyter-server", 0, 3.0),  # 0.200
            _rec("jupyter-server", 1, 4.0), _rec("zasperhub", 1, 0.6),  # 0.150 (order swapped)
            _rec("zasperhub", 2, 0.7), _rec("jupyter-server", 2, 4.0)]  # 0.175
    lines = repeat_lines(recs)
    row = next(line for line in lines if line.startswith("| steady | 2×10 | v1 |"))
    assert row.endswith("| 0.175 |"), row
    assert "0.600 / 3.000 (0.20×) · 0.600 / 4.000 (0.15×) · 0.700 / 4.000 (0.17×)" in row
    # A failed repeat is left out rather than paired with another repeat's record.
    failed = {**_rec("jupyter-server", 3, 1.0), "error": "boom"}
    assert repeat_lines(recs + [_rec("zasperhub", 3, 0.1), failed]) == lines


def test_single_runs_get_no_repeat_table() -> None:
    recs = [_rec("zasperhub", 0, 0.6), _rec("jupyter-server", 0, 3.0), _rec("zasperhub", 0, 0.5, "legacy"),
            _rec("jupyter-server", 0, 3.5, "legacy")]
    assert repeat_lines(recs) == []
    assert repeat_lines([{k: v for k, v in r.items() if k != "repeat"} for r in recs]) == []
    run = {"started": "t", "duration_s": 1, "command": "c", "machine": {}, "versions": {}, "records": recs}
    assert "Repeated configurations" not in markdown(run)
