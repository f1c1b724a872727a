"""The opt-in pool of pre-started kernels (`--KernelRegistry.pool_size`), with real ipykernel kernels.

Checked: a new session gets the pooled process, in the requested directory
and with the session's environment; the handoff's silent execute leaves no
trace (no message reaches the client, execution_count starts at 1, nothing in
In or the namespace); the pool refills; other kernelspecs bypass it; and no
pooled kernel outlives the server, even one still starting at SIGTERM.
"""

from __future__ import annotations

import ast
import asyncio
import re
import signal
import time

import httpx
import psutil
import pytest

from tests.kernels.conftest import kernel_processes, start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS


def _kernel_pids(server_pid: int) -> set[int]:
    return {p.pid for p in kernel_processes(server_pid)}


def _wait_pool(srv, http: httpx.Client, pooled: int, ready_total: int, timeout: float = 90) -> set[int]:
    """Kernel pids once `pooled` processes are not listed over REST and `ready_total` pool starts were logged.

    (A listed kernel's pid is not known over REST; callers compare sets.)
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = len(http.get("/api/kernels").json())
        pids = _kernel_pids(srv.proc.pid)
        if len(pids) - listed == pooled and len(re.findall(r"Pooled kernel \S+ ready", srv.log())) >= ready_total:
            return pids
        time.sleep(0.2)
    raise AssertionError(f"pool did not reach {pooled} kernels in {timeout}s:\n{srv.log()}")


@pytest.fixture(scope="module")
def pool_server(tmp_path_factory):
    srv = start_kernel_server(tmp_path_factory.mktemp("pool"), "--KernelRegistry.pool_size=1", "--log-level=INFO")
    (srv.root_dir / "sub dir").mkdir()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pool_http(pool_server):
    with pool_server.client() as client:
        yield client


async def test_session_gets_pooled_kernel_in_its_directory(pool_server, pool_http):
    pooled = _wait_pool(pool_server, pool_http, 1, 1)
    path = "sub dir/nb.ipynb"
    r = pool_http.post("/api/sessions", json={"path": path, "type": "notebook", "kernel": {"name": "python3"}})
    assert r.status_code == 201, r.text
    kernel_id = r.json()["kernel"]["id"]
    assert r.json()["kernel"]["execution_state"] == "idle"
    client = await KernelWS.connect(pool_server, kernel_id, "v1")
    try:
        code = (
            "(__import__('os').getpid(), __import__('os').getcwd(), __import__('os').environ.get('JPY_SESSION_NAME'),"
            " 'os' in globals(), list(In))"
        )
        header = await client.send(
            "shell", "execute_request",
            {"code": code, "silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        )
        # Every message the client sees answers its own request: nothing of
        # the handoff leaks (no status, stream or error from the server's execute).
        seen = []
        reply = idle = None
        deadline = time.monotonic() + 60
        while (reply is None or idle is None) and time.monotonic() < deadline:
            msg = await client.recv(max(0.1, deadline - time.monotonic()))
            seen.append(msg)
            if msg["channel"] == "shell":
                reply = msg
            elif msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = msg
        foreign = [m for m in seen if m["parent_header"].get("msg_id") != header["msg_id"]]
        assert not foreign, foreign
        assert reply["content"]["status"] == "ok", reply["content"]
        assert reply["content"]["execution_count"] == 1
        result = [m for m in seen if m["header"]["msg_type"] == "execute_result"]
        assert result[0]["content"]["execution_count"] == 1
        pid, cwd, session_name, os_bound, history = ast.literal_eval(result[0]["content"]["data"]["text/plain"])
        assert pid in pooled
        assert cwd == str(pool_server.root_dir / "sub dir")
        assert session_name == path
        assert os_bound is False
        assert "chdir" not in "".join(history)
        assert [m["header"]["msg_type"] for m in seen if m["header"]["msg_type"] in ("stream", "error")] == []
    finally:
        await client.close()

    # The pool refills in the background with a new process.
    refilled = _wait_pool(pool_server, pool_http, 1, 2)
    assert refilled - pooled, "no new pooled kernel after the handoff"
    assert pool_http.delete(f"/api/sessions/{r.json()['id']}").status_code == 204


async def test_other_and_unknown_kernelspecs_bypass_the_pool(pool_server, pool_http):
    pooled = _wait_pool(pool_server, pool_http, 1, 2)
    other = start_kernel(pool_http, "zasper-test")
    try:
        assert _wait_pool(pool_server, pool_http, 1, 2) >= pooled  # the pooled process is still unused
        client = await KernelWS.connect(pool_server, other, "v1")
        try:
            out = await client.execute("import os; os.environ.get('ZASPER_TEST_SPEC_ENV')")
            assert out["result"]["text/plain"] == "'from-spec'"
        finally:
            await client.close()
    finally:
        pool_http.delete(f"/api/kernels/{other}")
    # A bad request is refused the same way with or without a pool, and the
    # pooled kernel is not spent on it.
    r = pool_http.post("/api/kernels", json={"name": "no-such-spec"})
    assert r.status_code == 404, r.text
    assert pooled <= _wait_pool(pool_server, pool_http, 1, 2)


@pytest.mark.parametrize("wait_for_pool", [True, False])
def test_sigterm_leaves_no_pooled_kernels(tmp_path, wait_for_pool):
    srv = start_kernel_server(tmp_path, "--KernelRegistry.pool_size=2", "--log-level=INFO")
    try:
        with srv.client() as http:
            # The pool never delays start-up: the server already answered.
            assert http.get("/api/status").status_code == 200
            if wait_for_pool:
                pids = _wait_pool(srv, http, 2, 2)
            else:
                # Stop while the pool is still starting its kernels.
                deadline = time.monotonic() + 30
                while not _kernel_pids(srv.proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.02)
                pids = _kernel_pids(srv.proc.pid)
                assert pids, "the pool did not start a kernel"
        procs = [psutil.Process(p) for p in pids]
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0
        _, alive = psutil.wait_procs(procs, timeout=10)
        assert not alive, alive
        # Nor any kernel started after `pids` was taken (their connection files live in runtime_dir).
        stray = [p for p in psutil.process_iter(["cmdline"]) if str(srv.runtime_dir) in " ".join(p.info["cmdline"] or [])]
        assert not stray, stray
        assert not list(srv.runtime_dir.glob("kernel-*.json"))
        assert "[E " not in srv.log(), srv.log()
    finally:
        srv.stop()


# -- prewarm (KernelRegistry.prewarm, called by the UI when the app opens) ----------

def _kernel_children() -> set[int]:
    """ipykernel processes started by this test process itself (in-process registries)."""
    return {p.pid for p in psutil.Process().children() if "ipykernel" in " ".join(p.cmdline())}


async def _wait_warm(registry, ready: int, timeout: float = 120):
    """The registry's pooled kernels once `ready` of them answered (bounded wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pooled = registry.warm_kernels()
        if sum(1 for pool in registry._pools.values() for _ in range(pool.ready_count)) >= ready:
            return pooled
        await asyncio.sleep(0.1)
    raise AssertionError(f"no warm kernel within {timeout}s")


@pytest.fixture
async def bare_registry(tmp_path):
    """A registry in this process (no server), and the kernel processes that existed before it.

    Teardown shuts it down and checks that none of its kernels outlived it.
    """
    from zasperhub.platform.kernels.registry import KernelRegistry

    before = _kernel_children()
    registry = KernelRegistry(root_dir=str(tmp_path))
    try:
        yield registry, before
    finally:
        await registry.shutdown_all()
    assert _kernel_children() - before == set()


async def test_prewarm_starts_one_kernel_that_the_next_session_takes(bare_registry, tmp_path):
    registry, before = bare_registry
    registry.prewarm()
    registry.prewarm()  # idempotent: still one
    warm = await _wait_warm(registry, 1)
    registry.prewarm()
    registry.prewarm("python3")
    await asyncio.sleep(0.5)
    assert [k.id for k in registry.warm_kernels()] == [warm[0].id]
    assert len(_kernel_children() - before) == 1
    (tmp_path / "work").mkdir()
    kid = await registry.start_kernel(cwd=str(tmp_path / "work"), env={"JPY_SESSION_NAME": "work/nb.ipynb"})
    assert kid == warm[0].id
    reply = await registry.get(kid).run_silent(f"assert __import__('os').getcwd() == {str(tmp_path / 'work')!r}", 60)
    assert reply["status"] == "ok"
    # Taken, not replaced: pool_size is 0.
    await asyncio.sleep(0.5)
    assert registry.warm_kernels() == []


async def test_unused_warm_kernel_is_shut_down_after_the_timeout(bare_registry):
    registry, _ = bare_registry
    registry.prewarm()
    warm = await _wait_warm(registry, 1)
    # A call while the warm kernel waits restarts its clock, now a short one.
    registry.prewarm_timeout = 0.5
    registry.prewarm()
    pid = warm[0].pid
    assert pid in _kernel_children()
    for _ in range(300):
        if not registry.warm_kernels() and not psutil.pid_exists(pid):
            break
        await asyncio.sleep(0.1)
    assert registry.warm_kernels() == []
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    # Expired warm kernels are never handed out; a later session starts normally.
    kid = await registry.start_kernel()
    assert kid != warm[0].id


async def test_prewarm_unknown_kernelspec_or_exit_while_starting_leaks_nothing(bare_registry):
    registry, before = bare_registry
    registry.prewarm("no-such-kernelspec")
    await asyncio.sleep(1)
    assert registry.warm_kernels() == []
    registry.prewarm()
    # Exit while the warm kernel is still starting.
    for _ in range(200):
        if registry.warm_kernels():
            break
        await asyncio.sleep(0.05)
    await registry.shutdown_all()
    assert registry.warm_kernels() == []
    assert _kernel_children() - before == set()
    registry.prewarm()  # after exit: nothing starts
    await asyncio.sleep(0.5)
    assert registry.warm_kernels() == []
