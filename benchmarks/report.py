"""Write a run's results: full JSON, a markdown table of ratios, PNG plots."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

LOAD_SCENARIOS = ("steady", "saturation", "overload", "ceiling")


def machine() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version()}


def versions(servers: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("zasperhub", "jupyter_server", "ipykernel", "jupyter_client", "tornado", "pyzmq", "websockets"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _get(rec: dict[str, Any], *path: str) -> Any:
    cur: Any = rec
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def one_line(rec: dict[str, Any]) -> str:
    """A short progress line for the console."""
    if "error" in rec:
        return "ERROR " + rec["error"][:300]
    res = rec.get("result", {})
    parts = [f"cold {rec.get('cold_start_s')}s", f"idle {rec.get('idle_rss_mb')}MB"]
    if "replies" in res:
        lat = res["reply_latency_ms"]
        parts += [f"sent {res['sent']} replies {res['replies']} unanswered {res.get('unanswered')}",
                  f"idle-missing {res.get('iopub_idle_missing')}", f"p50 {lat['p50']}ms p99 {lat['p99']}ms",
                  f"srv {rec.get('server_cpu_s_per_1000')} cpu-s/1k", f"rss max {_get(rec, 'rss_load_mb', 'max')}MB",
                  f"client {rec.get('client_cpu_pct')}%", f"dropped {res.get('dropped_ws')}"]
    if "first_idle_ms" in res:
        parts.append(f"kernel start p50 {res['first_idle_ms']['p50']}ms")
    return ", ".join(str(p) for p in parts)


def _slowest_probe(probe: dict[str, float] | None) -> str:
    """Where the slowest slow `/api/status` probe went: the server running, or waiting for a CPU."""
    if not probe or "server_ran_ms" not in probe:
        return ""
    return (f"; slowest {_fmt(probe['ms'])} ms: server ran {_fmt(probe['server_ran_ms'])} ms, "
            f"waited {_fmt(probe['server_waited_ms'])} ms for a CPU")


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _cell(zh: Any, js: Any, digits: int = 1) -> str:
    """``zh / js (ratio×)``: the ratio is zasperhub divided by jupyter-server."""
    text = f"{_fmt(zh, digits)} / {_fmt(js, digits)}"
    if isinstance(zh, (int, float)) and isinstance(js, (int, float)) and js:
        text += f" ({zh / js:.2f}×)"
    return text


def _pairs(records: list[dict[str, Any]], scenarios: tuple[str, ...]) -> list[tuple[tuple, dict[str, dict[str, Any]]]]:
    groups: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for rec in records:
        if rec["scenario"] in scenarios:
            groups[(rec["scenario"], rec["kernels"], rec["rate"], rec["wire"])][rec["server"]] = rec
    return sorted(groups.items(), key=lambda kv: (scenarios.index(kv[0][0]), kv[0][3], kv[0][1] * max(kv[0][2], 1)))


def repeat_lines(records: list[dict[str, Any]]) -> list[str]:
    """For configurations run more than once (`run --repeat`): each repeat's server CPU per 1k round trips,
    zasperhub / Jupyter Server, and the median of the ratios (the main table shows the last repeat)."""
    groups: dict[tuple, dict[int, dict[str, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for rec in records:
        if "repeat" in rec and rec["scenario"] in LOAD_SCENARIOS and "error" not in rec:
            groups[(rec["scenario"], rec["kernels"], rec["rate"], rec["wire"])][rec["repeat"]][rec["server"]] = rec
    out: list[str] = []
    for (scen, k, r, wire), reps in sorted(groups.items(), key=lambda kv: (kv[0][3], kv[0][1], kv[0][2], kv[0][0])):
        ratios = []
        cells = []
        for rep in sorted(reps):
            zh, js = reps[rep].get("zasperhub", {}), reps[rep].get("jupyter-server", {})
            a, b = zh.get("server_cpu_s_per_1000"), js.get("server_cpu_s_per_1000")
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
                ratios.append(a / b)
                cells.append(_cell(a, b, 3))
        if len(ratios) < 2:
            continue
        if not out:
            out += ["", "Repeated configurations (servers' order swapped every repeat): server CPU-s per 1k round trips",
                    "", "| scenario | config | wire | each repeat, zasperhub / jupyter-server | median ratio |",
                    "|---|---|---|---|---|"]
        out.append(f"| {scen} | {k}×{r} | {wire} | {' · '.join(cells)} | {statistics.median(ratios):.3f} |")
    return out


def _loss(rec: dict[str, Any] | None) -> str:
    if not rec:
        return "–"
    if "error" in rec:
        return "error"
    r = rec.get("result", {})
    text = f"{r.get('unanswered')}/{r.get('iopub_idle_missing')}/{r.get('dropped_ws')}/{r.get('dead_kernels')}"
    sentinels = r.get("iopub_sentinels")
    if sentinels is not None and sentinels < rec["kernels"]:
        # Some kernels' iopub never delivered the sentinel: their missing idles may be late, not lost.
        text += f" (sentinel {sentinels}/{rec['kernels']})"
    return text


def rss_by_minute(rec: dict[str, Any]) -> list[float]:
    """The server's largest RSS sample in each whole or partial minute of the load phase (MB)."""
    load = [s for s in rec.get("samples", []) if s.get("phase") == "load" and s.get("server_rss_mb") is not None]
    if not load:
        return []
    t0 = load[0]["t"]
    minutes: dict[int, float] = {}
    for s in load:
        m = int((s["t"] - t0) // 60)
        minutes[m] = max(minutes.get(m, 0.0), float(s["server_rss_mb"]))
    return [round(minutes[m], 1) for m in sorted(minutes)]


def soak_lines(recs: list[dict[str, Any]], min_window: float = 120) -> list[str]:
    """Per-minute server RSS of long runs: flat means the last minute is no higher than the first few."""
    long = [r for r in recs if r.get("window_s", 0) >= min_window and "error" not in r and r.get("scenario") in LOAD_SCENARIOS]
    if not long:
        return []
    out = ["", "Soak: server RSS max per minute of load (MB); growth = last minute − minute 2 (the first holds the ramp-up)", "",
           "| server | config | wire | minutes | RSS per minute | growth MB |", "|---|---|---|---|---|---|"]
    for r in long:
        minutes = rss_by_minute(r)
        growth = minutes[-1] - minutes[min(1, len(minutes) - 1)] if minutes else None
        out.append(f"| {r['server']} | {r['kernels']}×{r['rate']} | {r['wire']} | {len(minutes)} "
                   f"| {' '.join(f'{m:.1f}' for m in minutes)} | {_fmt(growth)} |")
    return out


def recovery_lines(recs: list[dict[str, Any]]) -> list[str]:
    """After the load: kernels answering kernel_info within the limit, and RSS once sessions are deleted."""
    out = []
    for (scen, k, r, wire), by in _pairs(recs, ("saturation", "overload")):
        cells = []
        for server in ("zasperhub", "jupyter-server"):
            rec = by.get(server)
            if rec is None or "error" in rec:
                continue
            rc = _get(rec, "result", "recovery") or {}
            cells.append(f"{server}: {rc.get('answered_within_limit')}/{rc.get('kernels')} within {rc.get('limit_s')} s "
                         f"(slowest {rc.get('slowest_s')} s), RSS after delete {_fmt(rec.get('rss_after_delete_mb'))} MB, "
                         f"/api/status p50/max {_fmt(_get(rec, 'status_probe_ms', 'p50'))}/{_fmt(_get(rec, 'status_probe_ms', 'max'))} ms "
                         f"({_get(rec, 'status_probe_ms', 'failures')} probes timed out"
                         f"{_slowest_probe(_get(rec, 'status_probe_ms', 'slowest'))})")
        if cells:
            out += ["", f"Recovery {scen} {k}×{r} {wire}: " + "; ".join(cells)]
    return out


def markdown(run: dict[str, Any]) -> str:
    recs = run["records"]
    out = [f"Run {run['started']} ({run['duration_s']} s), command: `{run['command']}`", "",
           "Machine: " + ", ".join(f"{k} {v}" for k, v in run["machine"].items()), "",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in run["versions"].items()), "",
           "Cells read `zasperhub / jupyter-server (ratio)`; lower is better except replies/s.", ""]
    rows = _pairs(recs, LOAD_SCENARIOS)
    if rows:
        out += ["| scenario | config | wire | server CPU-s / 1k round trips | reply p50 ms | reply p99 ms | idle p99 ms "
                "| replies/s | server RSS max MB | /api/status p99 ms | lost: unanswered/idle-missing/dropped WS/dead "
                "| client CPU % | machine CPU % (all processes, 200 = 2 cores) |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for (scen, k, r, wire), by in rows:
            zh, js = by.get("zasperhub", {}), by.get("jupyter-server", {})
            g = _get
            out.append(" | ".join([
                f"| {scen}", f"{k}×{r}" if r else f"{k} kernels", wire,
                _cell(zh.get("server_cpu_s_per_1000"), js.get("server_cpu_s_per_1000"), 2),
                _cell(g(zh, "result", "reply_latency_ms", "p50"), g(js, "result", "reply_latency_ms", "p50")),
                _cell(g(zh, "result", "reply_latency_ms", "p99"), g(js, "result", "reply_latency_ms", "p99")),
                _cell(g(zh, "result", "idle_latency_ms", "p99"), g(js, "result", "idle_latency_ms", "p99")),
                _cell(g(zh, "result", "replies_per_s"), g(js, "result", "replies_per_s")),
                _cell(g(zh, "rss_load_mb", "max"), g(js, "rss_load_mb", "max")),
                _cell(g(zh, "status_probe_ms", "p99"), g(js, "status_probe_ms", "p99")),
                f"{_loss(zh)} vs {_loss(js)}",
                f"{_fmt(zh.get('client_cpu_pct'))} / {_fmt(js.get('client_cpu_pct'))}",
                f"{_fmt(zh.get('machine_cpu_pct_load'), 0)} / {_fmt(js.get('machine_cpu_pct_load'), 0)} |",
            ]))
        ceil = [(key, by) for key, by in rows if key[0] == "ceiling"]
        if ceil:
            out += ["", "Server ceiling (echo kernel, closed loop): round trips per server CPU-second",
                    "", "| wire | config | round trips/s | per server CPU-s | server CPU % |", "|---|---|---|---|---|"]
            for (_, k, _r, wire), by in ceil:
                zh, js = by.get("zasperhub", {}), by.get("jupyter-server", {})
                out.append(f"| {wire} | {k} kernels | {_cell(_get(zh, 'result', 'replies_per_s'), _get(js, 'result', 'replies_per_s'))} "
                           f"| {_cell(zh.get('round_trips_per_server_cpu_s'), js.get('round_trips_per_server_cpu_s'))} "
                           f"| {_cell(zh.get('server_cpu_pct'), js.get('server_cpu_pct'))} |")
    out += ["", "| server | runs | cold start s (median) | idle RSS MB (median) | RSS after sessions deleted MB (max) |",
            "|---|---|---|---|---|"]
    for server in sorted({r["server"] for r in recs}):
        mine = [r for r in recs if r["server"] == server and "error" not in r]
        cold = sorted(r["cold_start_s"] for r in mine if r.get("cold_start_s"))
        idle = sorted(r["idle_rss_mb"] for r in mine if r.get("idle_rss_mb"))
        after = [r["rss_after_delete_mb"] for r in mine if r.get("rss_after_delete_mb")]
        out.append(f"| {server} | {len(mine)} | {_fmt(cold[len(cold) // 2] if cold else None, 3)} "
                   f"| {_fmt(idle[len(idle) // 2] if idle else None)} | {_fmt(max(after) if after else None)} |")
    for (scen, k, r, wire), by in _pairs(recs, ("idle",)):
        zh, js = by.get("zasperhub", {}), by.get("jupyter-server", {})
        out += ["", f"Idle cost ({k} kernels connected, {wire}, no executes; /api/status probed twice a second): server CPU "
                f"{_cell(zh.get('server_cpu_pct'), js.get('server_cpu_pct'), 2)} %, RSS "
                f"{_cell(_get(zh, 'rss_load_mb', 'mean'), _get(js, 'rss_load_mb', 'mean'))} MB"]
    for (scen, k, r, wire), by in _pairs(recs, ("startup",)):
        zh, js = by.get("zasperhub", {}), by.get("jupyter-server", {})
        out += ["", f"Kernel start ({wire}): POST /api/sessions p50 "
                f"{_cell(_get(zh, 'result', 'post_session_ms', 'p50'), _get(js, 'result', 'post_session_ms', 'p50'))} ms; "
                f"to first iopub idle p50 "
                f"{_cell(_get(zh, 'result', 'first_idle_ms', 'p50'), _get(js, 'result', 'first_idle_ms', 'p50'))} ms"]
    for (scen, k, r, wire), by in _pairs(recs, ("large_output", "slow_consumer")):
        for server, rec in sorted(by.items()):
            res = rec.get("result", {})
            if "error" in rec:
                out += ["", f"{scen} {wire} {server}: error {rec['error'][:200]}"]
                continue
            line = f"{scen} {wire} {server}: server RSS max {_fmt(_get(rec, 'rss_load_mb', 'max'))} MB, after {_fmt(rec.get('rss_after_delete_mb'))} MB"
            if scen == "large_output":
                for i, p in enumerate(res.get("prints", [])):
                    line += (f"; print #{i + 1}: idle seen at {p['idle_seen_s']} s, chars received {p['stream_chars']}"
                             f" of {res['print_expected_chars']}")
            st = res.get("stream") or {}
            rate_mb = res.get("stream_bytes_per_s", 1_000_000) / 1e6
            line += f"; {rate_mb:g} MB/s stream chars received {st.get('stream_chars')} of {res.get('stream_expected_chars')}"
            if scen == "slow_consumer":
                line += f"; stalled client {res.get('stalled')}; others' reply p99 {_get(res, 'reply_latency_ms', 'p99')} ms, lost {_loss(rec)}"
            out += ["", line]
    for rec in recs:
        prof = rec.get("profile")
        if not prof or not prof.get("samples"):
            continue
        out += ["", f"py-spy profile of {rec['server']} during {rec['scenario']} {rec['kernels']}x{rec['rate']} {rec['wire']} "
                f"({prof['samples']} samples, {prof['file']}):", "", "| self % | function | | inclusive % | function |", "|---|---|---|---|---|"]
        for (fs, ps), (fi, pi) in zip(prof["self_pct"][:12], prof["inclusive_pct"][:12]):
            out.append(f"| {ps} | `{fs}` | | {pi} | `{fi}` |")
    out += repeat_lines(recs)
    out += recovery_lines(recs)
    out += soak_lines(recs)
    errors = [r for r in recs if "error" in r]
    if errors:
        out += ["", "Errors:"] + [f"- {r['server']} {r['scenario']} {r['kernels']}x{r['rate']} {r['wire']}: {r['error'][:300]}" for r in errors]
    return "\n".join(out) + "\n"


def plots(run: dict[str, Any], out: Path, tag: str) -> list[Path]:
    """CPU, RSS, throughput and latency against configuration, one PNG each."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest: dict[tuple, dict[str, Any]] = {}
    for r in run["records"]:
        if r["scenario"] in LOAD_SCENARIOS and r["scenario"] != "ceiling" and "error" not in r:
            # A configuration measured twice (merged runs): plot the later one.
            latest[(r["server"], r["wire"], r["kernels"], r["rate"])] = r
    recs = list(latest.values())
    if not recs:
        return []
    labels = sorted({(r["kernels"], r["rate"]) for r in recs}, key=lambda kr: (kr[1], kr[0]))
    xs = {kr: i for i, kr in enumerate(labels)}
    metrics = [
        ("cpu", "server CPU-s per 1,000 round trips", lambda r: r.get("server_cpu_s_per_1000")),
        ("rss", "server RSS max during load (MB)", lambda r: _get(r, "rss_load_mb", "max")),
        ("throughput", "execute replies per second", lambda r: _get(r, "result", "replies_per_s")),
        ("latency", "reply latency p50 (solid) / p99 (dashed), ms", None),
    ]
    written = []
    for key, title, fn in metrics:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for server in ("zasperhub", "jupyter-server"):
            for wire in ("legacy", "v1"):
                mine = sorted((r for r in recs if r["server"] == server and r["wire"] == wire), key=lambda r: xs[(r["kernels"], r["rate"])])
                if not mine:
                    continue
                x = [xs[(r["kernels"], r["rate"])] for r in mine]
                name = f"{server} {wire}"
                if fn is None:
                    line, = ax.plot(x, [_get(r, "result", "reply_latency_ms", "p50") for r in mine], marker="o", label=name)
                    ax.plot(x, [_get(r, "result", "reply_latency_ms", "p99") for r in mine], marker="x", linestyle="--", color=line.get_color())
                    ax.set_yscale("log")
                else:
                    ax.plot(x, [fn(r) for r in mine], marker="o", label=name)
        ax.set_xticks(range(len(labels)), [f"{k}×{r}" for k, r in labels])
        ax.set_xlabel("kernels × executes/s per kernel")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"{tag}-{key}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def write_all(run: dict[str, Any], out: Path, tag: str, plots_on: bool = True, **kw: Any) -> list[Path]:
    """Write ``<tag>.json``, ``<tag>.md``, plots, and copy them to ``kernels-latest*``."""
    plots_on = kw.get("plots", plots_on)
    out.mkdir(parents=True, exist_ok=True)
    js = out / f"{tag}.json"
    js.write_text(json.dumps(run, indent=1, default=str))
    md = out / f"{tag}.md"
    md.write_text(markdown(run))
    paths = [js, md]
    if plots_on:
        paths += plots(run, out, tag)
    for path in list(paths):
        latest = out / path.name.replace(tag, "kernels-latest", 1)
        shutil.copyfile(path, latest)
    return paths


def merge(paths: list[Path]) -> dict[str, Any]:
    """Combine several runs' JSON into one run (commands joined) for one table."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    if not runs:
        raise ValueError("no result files given")
    return {"command": "` + `".join(r["command"] for r in runs), "started": runs[0]["started"],
            "duration_s": round(sum(r["duration_s"] for r in runs), 1), "machine": runs[0]["machine"],
            "versions": runs[0]["versions"], "quick": any(r["quick"] for r in runs),
            "records": [rec for r in runs for rec in r["records"]]}


def main(argv: list[str] | None = None) -> None:
    """``python -m benchmarks.report OUT_TAG RESULT.json…``: one markdown + plots for several runs."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit("usage: python -m benchmarks.report OUT_TAG RESULT.json [RESULT.json …]")
    paths = [Path(p) for p in args[1:]]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no such result file: {', '.join(missing)}")
    run = merge(paths)
    for path in write_all(run, paths[0].parent, args[0]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
