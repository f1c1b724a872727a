"""Kernel lifecycle: interrupt, restart, death and auto-restart, restart limit, culling, clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time

import psutil
import pytest

from tests.kernels.conftest import kernel_processes, start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS


def _status_is(state):
    return lambda m: m["channel"] == "iopub" and m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == state


async def _pid(client: KernelWS) -> int:
    return int((await client.execute("import os; os.getpid()"))["result"]["text/plain"])


@pytest.mark.parametrize("spec", ["python3", "zasper-test"])
async def test_interrupt_busy_loop(kserver, http, spec):
    """Signal mode (python3) and message mode (zasper-test) both stop `while True: pass`."""
    kid = start_kernel(http, spec)
    client = await KernelWS.connect(kserver, kid, "v1")
    try:
        header = await client.send(
            "shell", "execute_request",
            {"code": "while True: pass", "silent": False, "store_history": False, "user_expressions": {},
             "allow_stdin": False, "stop_on_error": True},
        )
        await client.wait_for(lambda m: m["header"]["msg_type"] == "execute_input")
        await asyncio.sleep(0.3)
        assert http.get(f"/api/kernels/{kid}").json()["execution_state"] == "busy"
        assert http.post(f"/api/kernels/{kid}/interrupt").status_code == 204
        out = await client.collect(header["msg_id"], timeout=30)
        assert out["reply"]["content"]["status"] == "error"
        assert out["reply"]["content"]["ename"] == "KeyboardInterrupt"
        assert (await client.execute("'alive'"))["result"]["text/plain"] == "'alive'"
        if spec == "zasper-test":
            env = await client.execute("import os; os.environ.get('ZASPER_TEST_SPEC_ENV')")
            assert env["result"]["text/plain"] == "'from-spec'"
    finally:
        await client.close()
        http.delete(f"/api/kernels/{kid}")


async def test_restart_tells_clients_and_resets_state(kserver, http):
    kid = start_kernel(http)
    client = await KernelWS.connect(kserver, kid, "legacy")
    try:
        await client.execute("x = 1")
        pid = await _pid(client)
        r = await asyncio.to_thread(http.post, f"/api/kernels/{kid}/restart", json={})
        assert r.status_code == 200
        await client.wait_for(_status_is("restarting"))
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        await client.close()
    # The client reconnects after `restarting`, as JupyterLab does.
    again = await KernelWS.connect(kserver, kid, "legacy")
    try:
        out = await again.execute("'x' in globals()")
        assert out["result"]["text/plain"] == "False"
    finally:
        await again.close()
        http.delete(f"/api/kernels/{kid}")


async def test_killed_kernel_is_restarted_and_clients_told(kserver, http):
    kid = start_kernel(http)
    client = await KernelWS.connect(kserver, kid, "v1")
    try:
        pid = await _pid(client)
        os.kill(pid, signal.SIGKILL)
        await client.wait_for(_status_is("restarting"), timeout=30)
    finally:
        await client.close()
    again = await KernelWS.connect(kserver, kid, "v1")
    try:
        new_pid = await _pid(again)
        assert new_pid != pid
        assert http.get(f"/api/kernels/{kid}").json()["execution_state"] in ("idle", "busy")
    finally:
        await again.close()
        http.delete(f"/api/kernels/{kid}")


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """No automatic restarts; idle kernels culled after 3 s; no liveness polling.

    With an hour between polls, a death seen within seconds was seen through
    the kernel's pidfd (exit_watch.py), not by polling.
    """
    srv = start_kernel_server(
        tmp_path_factory.mktemp("strict"),
        "--KernelRegistry.restart_limit=0",
        "--KernelRegistry.poll_interval=3600",
        "--KernelRegistry.cull_idle_timeout=3",
        "--KernelRegistry.cull_interval=1",
    )
    yield srv
    srv.stop()


async def test_kernel_dead_past_restart_limit(strict_server):
    with strict_server.client() as http:
        kid = start_kernel(http)
        client = await KernelWS.connect(strict_server, kid, "v1")
        pid = await _pid(client)
        os.kill(pid, signal.SIGKILL)
        msg = await client.wait_for(_status_is("dead"), timeout=30)
        assert isinstance(msg["parent_header"], dict)
        deadline = time.monotonic() + 20
        while http.get(f"/api/kernels/{kid}").status_code != 404 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert http.get(f"/api/kernels/{kid}").status_code == 404
        assert not (strict_server.runtime_dir / f"kernel-{kid}.json").exists()
        await client.close()


async def test_idle_kernel_is_culled_but_not_while_connected(strict_server):
    with strict_server.client() as http:
        idle = start_kernel(http)
        watched = start_kernel(http)
        client = await KernelWS.connect(strict_server, watched, "v1")
        try:
            deadline = time.monotonic() + 30
            while http.get(f"/api/kernels/{idle}").status_code != 404 and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            assert http.get(f"/api/kernels/{idle}").status_code == 404, (http.get(f"/api/kernels/{idle}").json(), strict_server.log()[-4000:])
            assert "Culling kernel" in strict_server.log()
            # Connected kernels are kept (cull_connected is off).
            assert http.get(f"/api/kernels/{watched}").status_code == 200
        finally:
            await client.close()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # TIME_WAIT remnants are fine; a listener still holding the port is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_server_exit_leaves_no_kernels_ports_or_files(tmp_path, sig):
    srv = start_kernel_server(tmp_path, "--KernelRegistry.shutdown_wait_time=2")
    try:
        with srv.client() as http:
            kids = [start_kernel(http), start_kernel(http, "zasper-test")]
            busy = await KernelWS.connect(srv, kids[0], "v1")
            await busy.send("shell", "execute_request", {"code": "while True: pass", "silent": False, "store_history": False,
                                                          "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
            procs = kernel_processes(srv.proc.pid)
            assert len(procs) == 2
            ports = []
            for kid in kids:
                info = json.loads((srv.runtime_dir / f"kernel-{kid}.json").read_text())
                ports += [info[f"{c}_port"] for c in ("shell", "iopub", "stdin", "control", "hb")]
        srv.proc.send_signal(sig)
        assert srv.proc.wait(30) == 0
        await busy.ws.close()
        _, alive = psutil.wait_procs(procs, timeout=5)
        assert not alive, alive
        assert not list(srv.runtime_dir.glob("kernel-*.json"))
        assert all(_port_free(p) for p in ports)
        # The server logged no error of its own (the busy kernel may print
        # its own traceback when its sockets close under it).
        server_lines = [line for line in srv.log().splitlines() if not line.startswith("[IPKernelApp]")]
        assert not [line for line in server_lines if line.startswith("[E ")], srv.log()
        assert not [line for line in server_lines if "exception was never retrieved" in line or "Exception in callback" in line]
    finally:
        srv.stop()
