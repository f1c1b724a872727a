"""Lifecycle behaviour that keeps the server usable under load, with real ipykernel kernels.

Checked: kernels (and all their threads) run at a lower priority than the
server, also after a restart, and not when `kernel_niceness` is 0; the
server and its kernels run under SCHED_BATCH (unless switched off); the replay
buffer keeps only what no client received; while the server shuts down,
requests for its kernels and sessions get 503, not 404; a new kernel is
usable right after its session is created (the kernel_info handshake).
"""

from __future__ import annotations

import asyncio
import os
import time

import psutil
import pytest

from tests.kernels.conftest import start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS
from zasperhub.platform.kernels.priority import autogroup as _autogroup
from zasperhub.platform.kernels.registry import KernelRegistry

DEFAULT_NICENESS = KernelRegistry.kernel_niceness.default_value

EXECUTE = {"silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}


async def _pid(client: KernelWS) -> int:
    return int((await client.execute("import os; os.getpid()"))["result"]["text/plain"])


def _thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of `pid` (Linux keeps one per thread)."""
    return {os.getpriority(os.PRIO_PROCESS, t.id) for t in psutil.Process(pid).threads()}


def _check_priority(kernel_pid: int, server_pid: int, increment: int) -> None:
    """Threads at the server's nice + increment; with autogroups, the kernel's group likewise.

    With autogroups a kernel (in its own session, so its own group) is ranked
    against the server by the group's nice value, not its threads'.
    """
    assert _thread_nices(kernel_pid) == {min(19, psutil.Process(server_pid).nice() + increment)}
    kernel_group, server_group = _autogroup(kernel_pid), _autogroup(server_pid)
    if kernel_group is not None and server_group is not None and kernel_group[0] != server_group[0]:
        assert kernel_group[1] == min(19, server_group[1] + increment) if increment else kernel_group[1] <= server_group[1]


async def test_kernels_run_below_the_server_also_after_restart(kserver, http):
    server_nice = psutil.Process(kserver.proc.pid).nice()
    kid = start_kernel(http)
    try:
        client = await KernelWS.connect(kserver, kid)
        try:
            pid = await _pid(client)
            _check_priority(pid, kserver.proc.pid, DEFAULT_NICENESS)
            # Threads the kernel starts later inherit it.
            await client.execute("import threading; threading.Thread(target=lambda: __import__('time').sleep(30), daemon=True).start()")
            assert len(psutil.Process(pid).threads()) > 1
            _check_priority(pid, kserver.proc.pid, DEFAULT_NICENESS)
            r = http.post(f"/api/kernels/{kid}/restart")
            assert r.status_code == 200, r.text
            new_pid = await _pid(client)
            assert new_pid != pid
            _check_priority(new_pid, kserver.proc.pid, DEFAULT_NICENESS)
        finally:
            await client.close()
    finally:
        http.delete(f"/api/kernels/{kid}")
    # The server itself was left alone.
    assert psutil.Process(kserver.proc.pid).nice() == server_nice


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(t.id) for t in psutil.Process(pid).threads()}


async def test_server_and_kernels_do_not_preempt_on_wakeup(kserver, http, tmp_path):
    # The event loop thread runs under SCHED_BATCH: its wake-ups do not preempt kernels.
    assert os.sched_getscheduler(kserver.proc.pid) == os.SCHED_BATCH
    kid = start_kernel(http)
    try:
        client = await KernelWS.connect(kserver, kid)
        try:
            assert _policies(await _pid(client)) == {os.SCHED_BATCH}  # inherited
        finally:
            await client.close()
    finally:
        http.delete(f"/api/kernels/{kid}")
    srv = start_kernel_server(tmp_path, "--ZasperApp.batch_scheduling=False")
    try:
        assert _policies(srv.proc.pid) == {os.SCHED_OTHER}
        with srv.client() as other:
            client = await KernelWS.connect(srv, start_kernel(other))
            try:
                assert _policies(await _pid(client)) == {os.SCHED_OTHER}
            finally:
                await client.close()
    finally:
        srv.stop()


async def test_kernel_niceness_zero_keeps_the_server_priority(tmp_path):
    srv = start_kernel_server(tmp_path, "--KernelRegistry.kernel_niceness=0")
    try:
        with srv.client() as http:
            kid = start_kernel(http)
            client = await KernelWS.connect(srv, kid)
            try:
                pid = await _pid(client)
                _check_priority(pid, srv.proc.pid, 0)
            finally:
                await client.close()
    finally:
        srv.stop()


async def test_replay_keeps_only_what_no_client_received(kserver, http):
    kid = start_kernel(http)
    try:
        first = await KernelWS.connect(kserver, kid)
        out = await first.execute("print('seen live')")
        assert out["stream"] == "seen live\n"
        await first.send("shell", "execute_request", dict(EXECUTE, code="import time; time.sleep(1.5); print('produced while away')"))
        await first.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        await first.close()
        # Bounded wait for the output to be produced while nobody is connected.
        for _ in range(100):
            if http.get(f"/api/kernels/{kid}").json()["execution_state"] == "idle":
                break
            await asyncio.sleep(0.1)
        second = await KernelWS.connect(kserver, kid)
        try:
            stream = await second.wait_for(lambda m: m["header"]["msg_type"] == "stream", timeout=30)
            # The first stream replayed is the one nobody received, not the one the first client saw.
            assert stream["content"]["text"] == "produced while away\n"
            # And nothing is replayed twice: a third client gets no old stream.
            await second.close()
            third = await KernelWS.connect(kserver, kid)
            try:
                out = await third.execute("print('fresh')")
                assert out["stream"] == "fresh\n"
                with pytest.raises(asyncio.TimeoutError):
                    await third.wait_for(lambda m: m["header"]["msg_type"] == "stream", timeout=1)
            finally:
                await third.close()
        finally:
            await second.close()
    finally:
        http.delete(f"/api/kernels/{kid}")


async def test_requests_during_shutdown_get_503_not_404(tmp_path):
    # A kernel that takes a few seconds to exit keeps the server in its
    # shutdown long enough to be asked about it.
    srv = start_kernel_server(tmp_path, "--KernelRegistry.shutdown_wait_time=10")
    stopped = False
    try:
        with srv.client() as http:
            kid = start_kernel(http)
            session = http.post("/api/sessions", json={"path": "nb.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
            assert session.status_code == 201, session.text
            sid = session.json()["id"]
            client = await KernelWS.connect(srv, kid)
            try:
                await client.execute("import atexit, time; atexit.register(time.sleep, 8)")
            finally:
                await client.close()
            assert http.get(f"/api/kernels/{kid}").status_code == 200
            srv.proc.send_signal(15)
            seen: list[int] = []
            deadline = time.monotonic() + 30
            # The kept-alive connection still reaches the server while it stops.
            while time.monotonic() < deadline and srv.proc.poll() is None:
                try:
                    status = http.get(f"/api/kernels/{kid}").status_code
                except Exception:  # noqa: BLE001 - the server closed the connection at the end
                    break
                seen.append(status)
                if status != 200:
                    break
                await asyncio.sleep(0.02)
            assert seen and seen[-1] == 503, seen
            assert http.get(f"/api/sessions/{sid}").status_code == 503
            assert http.delete(f"/api/kernels/{kid}").status_code == 503
            # The channels route says the same before any upgrade is attempted.
            assert http.get(f"/api/kernels/{kid}/channels").status_code == 503
            r = http.post("/api/kernels", json={"name": "python3"})
            assert r.status_code == 503 and "shutting down" in r.json()["message"]
            srv.proc.wait(60)
            stopped = True
    finally:
        if not stopped:
            srv.stop()


async def test_new_kernel_answers_right_after_its_session_is_created(kserver, http):
    """The client's first kernel_info is answered, with the iopub idle that follows it."""
    r = http.post("/api/sessions", json={"path": "start.ipynb", "type": "notebook", "kernel": {"name": "python3"}})
    assert r.status_code == 201, r.text
    kid, sid = r.json()["kernel"]["id"], r.json()["id"]
    try:
        client = await KernelWS.connect(kserver, kid)
        try:
            header = await client.send("shell", "kernel_info_request", {})
            out = await client.collect(header["msg_id"], timeout=120)
            assert out["reply"]["content"]["status"] == "ok"
            assert http.get(f"/api/kernels/{kid}").json()["execution_state"] == "idle"
        finally:
            await client.close()
    finally:
        http.delete(f"/api/sessions/{sid}")
