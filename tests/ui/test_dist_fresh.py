"""The committed UI build (platform/ui/dist/) must match its sources.

`npm run build` records a hash of every build input in dist/build-info.json;
this recomputes it the same way (see build.mjs `sourceHash`), so editing the
TypeScript without rebuilding fails here, on any machine, without node.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

UI = Path(__file__).resolve().parents[2] / "platform" / "ui"
DIST = UI / "dist"


def source_hash() -> str:
    files = sorted(p.relative_to(UI).as_posix() for p in (UI / "src").rglob("*") if p.is_file())
    files = sorted([*files, "package.json", "package-lock.json", "build.mjs"])
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update((UI / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def build_info() -> dict:
    return json.loads((DIST / "build-info.json").read_text())


def test_dist_matches_sources() -> None:
    assert build_info()["sourceHash"] == source_hash(), (
        "platform/ui/dist is stale: run `cd platform/ui && npm ci && npm run build` and commit dist/"
    )


def test_shell_references_built_assets() -> None:
    info = build_info()
    html = (DIST / "index.html").read_text()
    referenced = re.findall(r"%BASE_URL%static/ui/([^\"]+)", html)
    assert sorted(referenced) == sorted([info["entry"]["js"], info["entry"]["css"]])
    for name in [*referenced, info["katexCss"], *info["initialFiles"]]:
        assert (DIST / name).is_file(), name
        if name.endswith((".js", ".css")):
            assert (DIST / (name + ".gz")).is_file(), name + ".gz"


def test_no_stray_outputs() -> None:
    """Every hashed file in dist/ belongs to this build (old builds are removed)."""
    info = build_info()
    known = set(info["files"]) | {"index.html", "build-info.json"}
    for p in DIST.iterdir():
        if p.is_dir() or p.name.endswith((".gz", ".LEGAL.txt")):
            continue
        assert p.name in known, f"stray file in dist/: {p.name}"


def test_initial_bundle_within_budget() -> None:
    # The target: initial JavaScript <= 400 KB gzipped.
    assert build_info()["initialGzipBytes"] <= 400 * 1024


def test_widget_libraries_are_a_lazy_chunk() -> None:
    """ipywidgets' code is loaded on the first widget, never with the app."""
    info = build_info()
    widgets = info["lazy"]["widgets"]["files"]
    assert widgets and not set(widgets) & set(info["initialFiles"])
    for name in [*widgets, info["widgetsCss"]]:
        assert (DIST / name).is_file(), name
    # The widget chunk is much bigger than the budget left over: keep it out of the shell.
    main_js = (DIST / info["entry"]["js"]).read_text()
    assert "jupyter.widget.control" not in main_js
