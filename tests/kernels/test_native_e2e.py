"""The compiled path end to end: a real server with it and one without must say the same things.

The same script (outputs, a failing cell, comm messages with binary buffers,
two clients of one kernel) runs against both, over both wire formats; the
messages each client receives must match once the fields that differ by
nature (ids, dates, tracebacks' file names) are set aside.  The native
server's log must show that the compiled path carried the traffic.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from tests.kernels.conftest import start_kernel_server
from tests.kernels.test_native import _native
from tests.kernels.wsclient import ECHO_COMM_SETUP, KernelWS

pytestmark = pytest.mark.skipif(_native is None, reason="the _native extension is not built")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    native = start_kernel_server(tmp_path_factory.mktemp("native"), "--log-level=INFO")
    python = start_kernel_server(tmp_path_factory.mktemp("python"), "--log-level=INFO",
                                 "--KernelRegistry.native_path=False")
    yield {"native": native, "python": python}
    native.stop()
    python.stop()


def essence(msg: dict[str, Any]) -> tuple[Any, ...]:
    """What must be equal between the two servers."""
    content = dict(msg["content"])
    msg_type = msg["header"]["msg_type"]
    if msg_type in ("error", "execute_reply") and "traceback" in content:
        content["traceback"] = len(content["traceback"])
    content.pop("comm_id", None)
    if msg_type == "execute_reply":
        content.pop("engine_info", None)  # ipykernel's engine uuid
    buffers = [bytes(b) for b in msg.get("buffers", [])]
    return msg["channel"], msg_type, content, msg["parent_header"].get("msg_type"), buffers


async def script(server: Any, protocol: str) -> list[list[tuple[Any, ...]]]:
    """Run the session; returns what each of the two clients saw, in order."""
    with server.client() as http:
        kernel_id = http.post("/api/kernels", json={"name": "python3"}).json()["id"]
    first = await KernelWS.connect(server, kernel_id, protocol)
    second = await KernelWS.connect(server, kernel_id, protocol)
    seen: list[list[tuple[Any, ...]]] = [[], []]

    async def run(client: KernelWS, index: int, code: str) -> None:
        out = await client.execute(code)
        seen[index] += [essence(m) for m in [*out["iopub"], out["reply"]]]

    try:
        await run(first, 0, "print('hi'); 6 * 7")
        await run(second, 1, "import sys; print('err', file=sys.stderr); 1 / 0")
        await run(first, 0, ECHO_COMM_SETUP)
        comm_id = uuid.uuid4().hex
        await first.send("shell", "comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}})
        await first.send("shell", "comm_msg", {"comm_id": comm_id, "data": {}},
                         buffers=[bytes(range(256)) * 40, b"abc"])
        msg = await first.wait_for(lambda m: m["header"]["msg_type"] == "comm_msg" and m["channel"] == "iopub")
        seen[0].append(essence(msg))
        # The second client sees iopub of everything, replies of its own requests only.
        for _ in range(3):
            await run(second, 1, "for i in range(3): print(i)")
        await asyncio.sleep(0.3)
        while True:
            try:
                seen[1].append(essence(await second.recv(timeout=0.5)))
            except asyncio.TimeoutError:
                break
    finally:
        await first.close()
        await second.close()
        with server.client() as http:
            http.delete(f"/api/kernels/{kernel_id}")
    return seen


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
async def test_native_and_python_servers_say_the_same(servers, protocol):
    native = await script(servers["native"], protocol)
    python = await script(servers["python"], protocol)
    assert native[0] == python[0]
    assert native[1] == python[1]
    assert any(m[1] == "error" for m in native[1]) and any(m[4] for m in native[0])
    assert len(native[0]) >= 11 and len(native[1]) >= 20


async def test_the_compiled_path_carries_the_traffic(servers):
    await asyncio.sleep(1)  # the kernels of the tests above are shut down by now
    counts = [tuple(map(int, m)) for m in re.findall(r"(\d+) messages routed by the compiled path, (\d+) by Python",
                                                   servers["native"].log())]
    assert counts, servers["native"].log()[-2000:]
    fast = sum(f for f, _ in counts)
    slow = sum(s for _, s in counts)
    assert fast > 2 * slow, counts
    assert "routed by the compiled path" not in servers["python"].log()
