"""Optional py-spy sampling of the server during the load phase.

``Profiler`` attaches ``py-spy record --format raw`` (collapsed stacks) to the
server process for the load phase only; ``hot_spots`` turns the collapsed
stacks into the top functions by own (self) and inclusive CPU samples.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


class Profiler:
    """``py-spy record`` of one process until ``stop``."""

    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        exe = shutil.which("py-spy")
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        out.parent.mkdir(parents=True, exist_ok=True)
        # --nonblocking: do not pause the server to sample it.
        self.proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                                      "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if not self.out.exists():
            err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
            return {"file": None, "error": err[-500:]}
        return {"file": str(self.out), **hot_spots(self.out)}


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({path})"


def hot_spots(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and inclusive samples from py-spy's raw output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        # The first frame is the thread ("process N:..."/thread name) in raw output.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    # Event-loop and start-up frames sit under every sample; they say nothing.
    scaffolding = ("asyncio/", "<frozen runpy>", "(cli.py)", "run (app.py)", "ZasperApp.start", "ServerApp.start",
                   "launch_instance", "tornado/platform/asyncio.py", "jupyter_server/__main__", "<module>")
    for name in list(incl):
        if any(tag in name for tag in scaffolding):
            del incl[name]

    def table(c: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in c.most_common(top)] if total else []

    return {"samples": total, "self_pct": table(own), "inclusive_pct": table(incl)}
