"""exit_watch.wait_exit: a child's exit wakes the loop at once; a timeout or an unwatchable pid says so."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from zasperhub.platform.kernels import exit_watch

pytestmark = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd on this OS")


def _sleeper(seconds: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A child that would live 30 s; killed and reaped after the test."""
    proc = _sleeper(30)
    yield proc
    proc.kill()
    proc.wait()


async def test_exit_wakes_the_waiter_without_a_timeout(sleeper):
    waiter = asyncio.create_task(exit_watch.wait_exit(sleeper.pid, None))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    started = time.monotonic()
    sleeper.kill()
    assert await asyncio.wait_for(waiter, 10) is True
    assert time.monotonic() - started < 5
    # Exited but not reaped yet (a zombie): still "exited"; reaping is the Popen's job.
    assert sleeper.poll() is not None


async def test_timeout_while_alive_and_no_leaked_descriptor(sleeper):
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        assert await exit_watch.wait_exit(sleeper.pid, 0.05) is False
    assert len(os.listdir("/proc/self/fd")) == before
    assert sleeper.poll() is None


async def test_cancelled_waiter_removes_its_reader(sleeper):
    before = len(os.listdir("/proc/self/fd"))
    waiter = asyncio.create_task(exit_watch.wait_exit(sleeper.pid, None))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert len(os.listdir("/proc/self/fd")) == before


async def test_reaped_pid_counts_as_exited():
    proc = _sleeper(0)
    proc.wait()
    assert await exit_watch.wait_exit(proc.pid, 1) is True


async def test_unwatchable_pid_asks_the_caller_to_poll(monkeypatch):
    def refuse(pid):
        raise PermissionError("pidfd refused")

    monkeypatch.setattr(os, "pidfd_open", refuse)
    assert await exit_watch.wait_exit(os.getpid(), 1) is None
