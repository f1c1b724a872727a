"""Measure the web UI against the issue's targets and write benchmarks/results/ui.md.

1. Initial JavaScript + CSS, gzipped (from platform/ui/dist/build-info.json).
2. Server start -> notebook open and interactive, in a fresh browser profile:
   from spawning `zasperhub` until the notebook's cells are shown, and
   until its kernel reports idle (code can run); once with the default
   configuration and once with `--KernelRegistry.pool_size=1`.
3. A 1,000-cell notebook: navigation -> every cell in the DOM, then typing
   into a cell in the middle of it: keydown -> next paint measured inside
   the page (performance.now() on keydown, then the first task after the
   next animation frame, i.e. after the frame is painted), and the
   per-keystroke time including Playwright's round trip.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`).

    python -m benchmarks.ui_bench [--runs 5] [--out benchmarks/results/ui.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform as std_platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.servers import free_port

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "platform" / "ui" / "dist"
TOKEN = "ui-bench-token-7c1d"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class Server:
    """A `zasperhub` subprocess on a free loopback port."""

    def __init__(self, root: Path, extra: list[str] | None = None) -> None:
        self.root = root
        self.extra = list(extra or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Spawn and wait for `/api`; returns the spawn time (perf_counter)."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zasperhub.platform.cli", f"--port={self.port}", "--ip=127.0.0.1",
             f"--root-dir={self.root}", f"--token={TOKEN}", "--no-browser", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/api", timeout=1).status_code == 200:
                    return t0
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("server did not start within 30 s")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc = None


def notebook(cells: int) -> dict:
    """A notebook of alternating code (with a small output) and markdown cells."""
    out = []
    for i in range(cells):
        if i % 4 == 3:
            out.append({"id": f"m{i}", "cell_type": "markdown", "metadata": {}, "source": f"## Section {i}\n\nSome *text* with `code` and $x_{i}^2$."})
        else:
            out.append({
                "id": f"c{i}", "cell_type": "code", "metadata": {}, "execution_count": i,
                "source": f"def f_{i}(x):\n    return x * {i}\n\nvalues = [f_{i}(v) for v in range(10)]\nprint(values)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": str([v * i for v in range(10)]) + "\n"}],
            })
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}, "cells": out}


def bundle_size() -> dict:
    info = json.loads((DIST / "build-info.json").read_text())
    js_gzip = sum(v["gzip"] for k, v in info["files"].items() if k.endswith(".js") and k in info["initialFiles"])
    return {
        "initial_files": info["initialFiles"],
        "initial_gzip_bytes": info["initialGzipBytes"],
        "initial_js_gzip_bytes": js_gzip,
        "lazy_katex_js_gzip_bytes": info.get("lazy", {}).get("katex", {}).get("gzipBytes", 0),
        "lazy_widgets_js_gzip_bytes": info.get("lazy", {}).get("widgets", {}).get("gzipBytes", 0),
        "lazy_widgets_css_gzip_bytes": info["files"].get(info.get("widgetsCss", ""), {}).get("gzip", 0),
    }


def start_to_interactive(browser, runs: int, extra: list[str] | None = None) -> dict:
    api_ms, cells_ms, idle_ms = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "start.ipynb").write_text(json.dumps(notebook(5)))
            context = browser.new_context()  # a fresh profile: empty cache and cookies
            page = context.new_page()
            server = Server(root, extra)
            try:
                t0 = server.start()
                api_ms.append((time.perf_counter() - t0) * 1000)
                page.goto(f"{server.url}/notebooks/start.ipynb?token={TOKEN}")
                page.wait_for_selector(".zh-cell .zh-outputs .zh-output", timeout=30_000)
                cells_ms.append((time.perf_counter() - t0) * 1000)
                page.wait_for_selector(".zh-kernel-status[data-status=idle]", timeout=60_000)
                idle_ms.append((time.perf_counter() - t0) * 1000)
            finally:
                context.close()
                server.stop()
    return {"runs": runs, "args": list(extra or []), "server_answers_ms": api_ms, "cells_shown_ms": cells_ms, "kernel_idle_ms": idle_ms}


#: Installed in the page before typing: keydown -> the first task after the
#: next animation frame.  A rAF callback runs just before the frame is
#: painted; a message posted from it is handled once that paint is done.
PAINT_PROBE = """() => {
  window.__keyLatency = [];
  document.addEventListener('keydown', () => {
    const t0 = performance.now();
    requestAnimationFrame(() => {
      const ch = new MessageChannel();
      ch.port1.onmessage = () => window.__keyLatency.push(performance.now() - t0);
      ch.port2.postMessage(0);
    });
  }, true);
}"""


def big_notebook(browser, runs: int, cells: int = 1000) -> dict:
    open_ms, key_ms, paint_ms = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "big.ipynb").write_text(json.dumps(notebook(cells)))
        server = Server(root)
        server.start()
        try:
            for _ in range(runs):
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{server.url}/?token={TOKEN}")
                page.wait_for_selector(".zh-browser")
                t0 = time.perf_counter()
                page.goto(f"{server.url}/notebooks/big.ipynb")
                page.wait_for_function("n => document.querySelectorAll('.zh-cell').length === n", arg=cells, timeout=60_000)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
                open_ms.append((time.perf_counter() - t0) * 1000)
                # Type into a code cell in the middle of the notebook.
                middle = page.locator(".zh-cell.zh-code").nth(cells // 3)
                middle.scroll_into_view_if_needed()
                middle.locator(".zh-input").click()
                page.wait_for_selector(".zh-cell.zh-active .cm-content")
                page.keyboard.press("Control+End")
                page.evaluate(PAINT_PROBE)
                n = 60
                t1 = time.perf_counter()
                for _ in range(n):
                    page.keyboard.type("x")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)))")
                key_ms.append((time.perf_counter() - t1) * 1000 / n)
                # Spaced keystrokes for the in-page probe: each one's frame is its own.
                page.evaluate("() => { window.__keyLatency = []; }")
                for _ in range(n):
                    page.keyboard.type("y")
                    page.wait_for_timeout(30)
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
                paint_ms.extend(page.evaluate("() => window.__keyLatency"))
                context.close()
        finally:
            server.stop()
    return {"runs": runs, "cells": cells, "open_ms": open_ms, "ms_per_keystroke": key_ms, "keydown_to_paint_ms": paint_ms}


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.0f}" if values else "-"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


def start_rows(label: str, s: dict) -> list[str]:
    best = min(s["kernel_idle_ms"]) if s["kernel_idle_ms"] else float("nan")
    return [
        f"| Server start → notebook shown ({label}) | ≤ 1.5 s | {med(s['cells_shown_ms'])} ms "
        f"(server answering `/api`: {med(s['server_answers_ms'])} ms) |",
        f"| Server start → kernel idle, interactive ({label}) | ≤ 1.5 s | {med(s['kernel_idle_ms'])} ms median, {best:.0f} ms best |",
    ]


def write_report(out: Path, data: dict) -> None:
    b = data["bundle"]
    s = data["start"]
    sp = data["start_pool"]
    g = data["big"]
    paint = g["keydown_to_paint_ms"]
    lines = [
        "# Web UI measurements",
        "",
        f"Measured by `python -m benchmarks.ui_bench --runs {s['runs']}` on {data['machine']} "
        f"(headless Debian Chromium, loopback, server and browser on the same machine). "
        f"1-minute load average: {data['load_before']:.1f} before, {data['load_mid']:.1f} between the start-up variants, "
        f"{data['load_after']:.1f} after — other jobs share these CPUs.",
        "Times are medians over the runs; every run of the start-up and open measurements uses a fresh browser profile.",
        "",
        "| Target (issue 6) | Goal | Measured |",
        "|---|---|---|",
        f"| Initial JavaScript, gzipped | ≤ 400 KB | {b['initial_js_gzip_bytes'] / 1024:.1f} KB JS ({b['initial_gzip_bytes'] / 1024:.1f} KB JS + CSS) |",
        *start_rows("default", s),
        *start_rows("`--KernelRegistry.pool_size=1`", sp),
        f"| {g['cells']}-cell notebook opens | ≤ 3 s | {med(g['open_ms'])} ms |",
        f"| Typing in that notebook: keydown → next paint, in the page | responsive (≤ 50 ms) | "
        f"{statistics.median(paint):.1f} ms median, {pct(paint, 0.95):.1f} ms p95, {max(paint):.1f} ms max ({len(paint)} keys) |",
        f"| Typing, per keystroke incl. Playwright's round trip | – | {statistics.median(g['ms_per_keystroke']):.1f} ms |",
        "",
        "Loaded on demand, not part of the initial load:",
        "",
        f"- KaTeX (math), when a page has math: {b['lazy_katex_js_gzip_bytes'] / 1024:.1f} KB gzipped.",
        f"- ipywidgets (@jupyter-widgets/base, controls, output, with Backbone, jQuery, Lumino), on the first widget comm: "
        f"{b['lazy_widgets_js_gzip_bytes'] / 1024:.1f} KB JS + {b['lazy_widgets_css_gzip_bytes'] / 1024:.1f} KB CSS gzipped.",
        "",
        "How to read these:",
        "",
        "- *Notebook shown*: from spawning the server process until the notebook's cells and outputs are on screen",
        "  in a browser with an empty cache. From then on cells can be edited, and Shift+Enter queues the cell;",
        "  it runs as soon as the kernel is up.",
        "- *Kernel idle*: additionally waits for the kernel to report `idle`. The UI asks for the session in",
        "  parallel with fetching the notebook, and loading the app shell asks the kernel registry to pre-warm a",
        "  kernel (`KernelRegistry.prewarm`, when the registry has it), so ipykernel's own start-up (its imports,",
        "  the same for every Jupyter front end) overlaps with loading the page. With `pool_size=1` a kernel is",
        "  started with the server.",
        "- The 1,000-cell notebook has 750 code cells with output and 250 markdown cells with math. Editors are",
        "  created lazily (visible cells only) and off-screen cells skip layout (`content-visibility`).",
        "- *Keydown → next paint* is timed inside the page, without the automation round trip.",
        "",
        "Raw values (ms):",
        "",
        "```json",
        json.dumps({"start": s, "start_pool": sp, "big": g}, indent=1),
        "```",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ui.md")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            load_before = os.getloadavg()[0]
            data = {
                "load_before": load_before,
                "machine": f"{os.cpu_count()} CPUs, {std_platform.system()} {std_platform.machine()}, Python {std_platform.python_version()}",
                "bundle": bundle_size(),
                "start": start_to_interactive(browser, args.runs),
            }
            data["load_mid"] = os.getloadavg()[0]
            data["start_pool"] = start_to_interactive(browser, args.runs, ["--KernelRegistry.pool_size=1"])
            data["big"] = big_notebook(browser, max(1, args.runs // 2))
        finally:
            browser.close()
    data["load_after"] = os.getloadavg()[0]
    write_report(args.out, data)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
