"""Runs the UI's TypeScript unit tests (renderers, sanitizing, wire codecs)
with node's test runner; see platform/ui/build.mjs `--tests`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UI = Path(__file__).resolve().parents[2] / "platform" / "ui"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the UI unit tests")
    modules = UI / "node_modules"
    if not (modules / "esbuild").is_dir() or not (modules / "jsdom").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, check=True, timeout=300)
    return modules


def test_ui_unit_tests(node_modules: Path) -> None:
    proc = subprocess.run(["node", "build.mjs", "--tests"], cwd=UI, capture_output=True, text=True, timeout=240)
    summary = [line for line in proc.stdout.splitlines() if line.startswith("# ")]
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "# fail 0" in summary
    passed = next(int(line.split()[-1]) for line in summary if line.startswith("# pass"))
    assert passed >= 20
