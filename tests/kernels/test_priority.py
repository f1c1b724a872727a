"""Kernel CPU priority (`platform/kernels/priority.py`): threads and autogroups, and Linux's rate limit on the latter.

Without CAP_SYS_ADMIN, Linux refuses a second autogroup nice change within
100 ms machine-wide (EAGAIN).  The real-kernel test drops to an unprivileged
user in a forked child, starts several processes in sessions of their own
(as jupyter_client starts kernels) and checks every group ends up lowered;
the child first starts a session of its own, so its group is at nice 0
whatever group runs the tests.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import pwd
import subprocess
import sys
import time

import pytest

from zasperhub.platform.kernels import priority
from zasperhub.platform.kernels.priority import Renicer, autogroup

HAS_AUTOGROUPS = autogroup("self") is not None


def _group_nice(pid: int) -> int | None:
    group = autogroup(pid)
    return None if group is None else group[1]


def _sleepers(n: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in range(n)]
    time.sleep(0.3)  # past exec: before it, /proc/PID of a child of a setuid process is root's
    return procs


def _unprivileged_run(n: int) -> dict[str, object]:
    """In this (forked, unprivileged) process: lower `n` new sessions at once, then after the retries."""
    procs = _sleepers(n)
    try:
        async def main() -> dict[str, object]:
            renicer = Renicer()
            for p in procs:
                renicer.lower(p.pid, 5)
            right_away = [_group_nice(p.pid) for p in procs]
            queued = len(renicer.pending)
            await asyncio.sleep(priority.RETRY_INTERVAL_S * (n + 3))
            renicer.close()
            return {"right_away": right_away, "queued": queued, "later": [_group_nice(p.pid) for p in procs],
                    "threads": [os.getpriority(os.PRIO_PROCESS, p.pid) for p in procs]}

        return asyncio.run(main())
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.skipif(not HAS_AUTOGROUPS, reason="no scheduler autogroups on this machine")
def test_unprivileged_server_lowers_every_kernel_group_despite_the_rate_limit():
    n = 4
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read)
            os.setsid()  # a group of its own at nice 0, whatever group runs the tests
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            result = _unprivileged_run(n)
            result["thread_nice"] = min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
            os.write(write, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the unprivileged child failed"
    result = json.loads(data)
    # The rate limit is real: at once, only the first group could be lowered...
    assert result["right_away"][0] == 5, result
    assert result["queued"] >= 1, result
    # ...and the retries lowered the rest.
    assert result["later"] == [5] * n, result
    assert result["threads"] == [result["thread_nice"]] * n, result


class _FakeProc:
    """Stands in for /proc writes: refuses with EAGAIN a given number of times."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, refusals: int, error: int = errno.EAGAIN) -> None:
        self.refusals = refusals
        self.error = error
        self.written: list[tuple[int, int]] = []
        self.start_times: dict[int, int] = {}
        monkeypatch.setattr(priority, "renice_threads", lambda pid, nice: True)
        monkeypatch.setattr(priority, "autogroup", lambda pid: ("/autogroup-1", 0) if pid == "self" else (f"/autogroup-{pid}", 0))
        monkeypatch.setattr(priority, "_start_time", lambda pid: self.start_times.get(pid, 1))
        monkeypatch.setattr(priority, "write_group_nice", self.write)
        monkeypatch.setattr(priority, "RETRY_INTERVAL_S", 0.01)

    def write(self, pid: int, nice: int) -> None:
        if self.refusals:
            self.refusals -= 1
            raise OSError(self.error, os.strerror(self.error))
        self.written.append((pid, nice))


async def test_refused_writes_are_retried_in_order(monkeypatch):
    fake = _FakeProc(monkeypatch, refusals=3)
    renicer = Renicer()
    for pid in (101, 102, 103):
        assert renicer.lower(pid, 5) is not None
    assert renicer.pending == [101, 102, 103]
    await asyncio.sleep(0.3)
    assert fake.written == [(101, 5), (102, 5), (103, 5)]
    assert renicer.pending == []
    renicer.close()


async def test_an_exited_or_reused_pid_is_not_written(monkeypatch):
    fake = _FakeProc(monkeypatch, refusals=1)
    renicer = Renicer()
    renicer.lower(201, 5)
    fake.start_times[201] = 99  # pid 201 now belongs to a process started later
    await asyncio.sleep(0.1)
    assert fake.written == []
    assert renicer.pending == []
    renicer.close()


async def test_other_errors_are_not_retried(monkeypatch):
    fake = _FakeProc(monkeypatch, refusals=1, error=errno.EACCES)
    renicer = Renicer()
    assert renicer.lower(301, 5) is None  # the group could not be lowered
    assert renicer.pending == []
    await asyncio.sleep(0.05)
    assert fake.written == []
    renicer.close()


async def test_a_kernel_in_the_servers_own_group_gets_only_thread_nices(monkeypatch):
    fake = _FakeProc(monkeypatch, refusals=0)
    monkeypatch.setattr(priority, "autogroup", lambda pid: ("/autogroup-1", 0))
    renicer = Renicer()
    assert renicer.lower(401, 5) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5)
    assert fake.written == []
    renicer.close()
