"""Compatibility with JupyterLab's official client library, `@jupyterlab/services`, under node.

The node script (tests/node/kernel_client.mjs) creates a session, executes
code, restarts and interrupts the kernel over each wire format and, when the
contents API is mounted, saves and reads a notebook through its
ContentsManager.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "kernel_client.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (NODE_DIR / "node_modules" / "@jupyterlab" / "services").is_dir(),
    reason="node and tests/node/node_modules (npm ci) are required",
)


def _contents_mounted() -> bool:
    from zasperhub.platform.web import contents

    return bool(contents.handlers)


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_jupyterlab_services_session_execute_restart(kserver, http, protocol):
    args = ["node", str(SCRIPT), kserver.url, kserver.token, protocol]
    if _contents_mounted():
        args.append("contents")
    proc = subprocess.run(args, cwd=NODE_DIR, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\nserver:\n{kserver.log()[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["defaultSpec"] == "python3"
    assert report["implementation"] == "ipython"
    assert report["first"] == {"stream": "hello from node\n", "result": "42", "status": "ok"}
    assert report["afterRestart"]["result"] == "'restarted'"
    assert report["sessions"] == 1
    expected = "v1.kernel.websocket.jupyter.org" if protocol == "v1" else ""
    assert report["opened"] and set(report["opened"]) == {expected}
    if _contents_mounted():
        assert report["savedType"] == "notebook"
        assert report["savedSource"] == "print(1)"
    # The session's kernel was shut down by the client.
    assert not [s for s in http.get("/api/sessions").json() if s["path"] == f"node-{protocol}.ipynb"]
