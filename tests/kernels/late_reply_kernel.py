"""A test kernel that publishes a failing cell's idle before its reply.

ipykernel sends an execute_reply on shell and then the idle on iopub, but
the server reads the two sockets independently and may see the idle first
(it did under CPU load). This kernel makes that order certain: for a cell
whose code contains ``raise``, it stays busy ``SLOW`` seconds, publishes the
error and the idle, waits ``GAP`` seconds, and only then replies ``error``.
A cell containing ``noreply`` gets its idle and never a reply (as if it was lost).
A cell containing ``oddparent`` first gets an idle whose parent's msg_id is not
a string, then the echo kernel's answer.
Every other request is answered as the benchmark echo kernel answers it.

Run as ``python late_reply_kernel.py -f CONNECTION_FILE`` with the
repository root on ``PYTHONPATH`` (see ``install_kernelspec``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import orjson
import zmq

from benchmarks import echo_kernel

KERNEL_NAME = "late-reply"
SLOW = 0.6
GAP = 0.3


class LateReplyKernel(echo_kernel.EchoKernel):
    """The echo kernel, except that failing cells reply after their idle."""

    def answer(self, sock: zmq.Socket, idents: list[bytes], parts: list[bytes]) -> None:
        header = orjson.loads(parts[0])
        code = orjson.loads(parts[3]).get("code", "") if header.get("msg_type") == "execute_request" else ""
        if "oddparent" in code:
            self.status("idle", orjson.dumps({"msg_id": ["not", "a", "string"], "session": "elsewhere"}))
        if "raise" not in code and "noreply" not in code:
            super().answer(sock, idents, parts)
            return
        self.status("busy", parts[0])
        time.sleep(SLOW)
        self.count += 1
        if "noreply" in code:
            self.status("idle", parts[0])
            return
        error = {"ename": "RuntimeError", "evalue": "failed on purpose", "traceback": ["RuntimeError: failed on purpose"]}
        self.send(self.iopub, "error", error, parts[0], [b"kernel.error"])
        self.status("idle", parts[0])
        time.sleep(GAP)
        self.send(sock, "execute_reply", {"status": "error", "execution_count": self.count, **error}, parts[0], idents)


def install_kernelspec(jupyter_path: Path) -> Path:
    """Write the ``late-reply`` kernelspec under ``jupyter_path/kernels``."""
    spec_dir = jupyter_path / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[2]
    spec = {
        "argv": [sys.executable, str(Path(__file__).resolve()), "-f", "{connection_file}"],
        "display_name": "Late reply (test)", "language": "text",
        "env": {"PYTHONPATH": str(root)},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


if __name__ == "__main__":
    echo_kernel.main(kernel_class=LateReplyKernel)
