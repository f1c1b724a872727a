"""Compatibility: JupyterLab's client library (@jupyterlab/services) drives our contents API."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

SCRIPT = Path(__file__).parent / "node" / "contents_client.mjs"
NODE_MODULES = Path(__file__).parents[1] / "node" / "node_modules" / "@jupyterlab" / "services"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not NODE_MODULES.is_dir(),
    reason="node and tests/node's npm packages are needed (scripts/install-test-deps.sh installs them)",
)


def test_jupyterlab_contents_manager(server: ServerProcess) -> None:
    folder = f"node-{uuid.uuid4().hex[:6]}"
    (server.root_dir / folder).mkdir()
    proc = subprocess.run(
        ["node", str(SCRIPT), server.url + "/", server.token, folder], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr + server.log()
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["untitled"] == f"{folder}/Untitled.ipynb"
    assert out["savedContentIsNull"] is True
    assert out["source"] == 'print("hi from node")\n1 + 1'
    assert out["hashAlgorithm"] == "sha256"
    assert out["renamed"] == f"{folder}/Renamed é.ipynb"
    assert out["copy"] == f"{folder}/Renamed é-Copy1.ipynb"
    assert out["checkpoints"] == ["checkpoint"]
    assert out["restoredCells"] == 1
    assert out["listing"] == ["file:notes.txt", "notebook:Renamed é-Copy1.ipynb", "notebook:Renamed é.ipynb"]
    assert out["deletedGone"] is True
    # The download URL the UI hands to the browser works (with the token).
    r = httpx.get(out["downloadUrl"], headers=server.headers)
    assert r.status_code == 200 and r.text == "plain text"
