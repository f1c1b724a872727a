"""The read gate with real kernels, over both kernel transports: order kept, nothing held too long.

While a request is outstanding the server leaves the kernel's iopub unread
and reads it when the answer arrives (coalesce.py).  What clients must still
see: outputs before the reply that follows them, output of a long cell as it
is printed (not at the end), a stdin prompt after what was printed before it,
and every message of a burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.kernels.conftest import start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS
from tests.support.server import ServerProcess

EXECUTE = {"silent": False, "store_history": False, "user_expressions": {}, "stop_on_error": True}


@pytest.fixture(scope="module", params=["pyzmq", "zmtp"])
def gserver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_kernel_server(
        tmp_path_factory.mktemp(f"gate-{request.param}"),
        f"--KernelRegistry.kernel_transport={request.param}",
        "--KernelRegistry.read_coalesce_ms=50",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def gkernel(gserver: ServerProcess) -> Iterator[str]:
    with gserver.client() as http:
        kid = start_kernel(http)
        yield kid
        http.delete(f"/api/kernels/{kid}")


def kind_of(msg: dict) -> str:
    """A message's type, with a status's state and a stream's text (`busy`, `stream:out`)."""
    kind = msg["header"]["msg_type"]
    if kind == "status":
        return msg["content"]["execution_state"]
    if kind == "stream":
        return f"stream:{msg['content']['text'].strip()}"
    return kind


@contextlib.asynccontextmanager
async def connected(server: ServerProcess, kernel_id: str, protocol: str = "v1") -> AsyncIterator[KernelWS]:
    client = await KernelWS.connect(server, kernel_id, protocol)
    try:
        yield client
    finally:
        await client.close()


async def received_in_order(client: KernelWS, msg_id: str, until: str, timeout: float = 30) -> list[tuple[str, float]]:
    """(kind, arrival time) of each message for `msg_id` until `until` and the idle status both came."""
    seen: list[tuple[str, float]] = []
    deadline = time.monotonic() + timeout
    while not ({until, "idle"} <= {kind for kind, _ in seen}):
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id:
            seen.append((kind_of(msg), time.monotonic()))
    return seen


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
async def test_outputs_reach_the_client_before_the_reply(gserver, gkernel, protocol):
    async with connected(gserver, gkernel, protocol) as client:
        for _ in range(5):
            header = await client.send("shell", "execute_request", {"code": "print('out'); 6 * 7", **EXECUTE})
            kinds = [k for k, _ in await received_in_order(client, header["msg_id"], "execute_reply")]
            assert kinds.count("busy") == kinds.count("idle") == 1
            for output in ("busy", "execute_input", "stream:out", "execute_result"):
                assert kinds.index(output) < kinds.index("execute_reply"), kinds


async def test_a_long_cell_streams_its_output_as_printed(gserver, gkernel):
    async with connected(gserver, gkernel) as client:
        code = "import time\nprint('early', flush=True)\ntime.sleep(1.5)\nprint('late')"
        header = await client.send("shell", "execute_request", {"code": code, **EXECUTE})
        seen = dict(await received_in_order(client, header["msg_id"], "execute_reply"))
        # Held at most the 50 ms deadline, not until the cell ends 1.5 s later.
        assert seen["execute_reply"] - seen["stream:early"] > 0.8
        assert seen["stream:late"] <= seen["execute_reply"]


async def test_a_stdin_prompt_follows_what_was_printed_before_it(gserver, gkernel):
    async with connected(gserver, gkernel) as client:
        code = "print('before'); x = input('name? '); print('got', x)"
        header = await client.send("shell", "execute_request", {"code": code, **EXECUTE, "allow_stdin": True})
        kinds: list[str] = []
        while "input_request" not in kinds:
            kinds.append(kind_of(await client.recv(30)))
        assert "stream:before" in kinds and kinds.index("stream:before") < kinds.index("input_request"), kinds
        await client.send("stdin", "input_reply", {"value": "gate"})
        rest = [k for k, _ in await received_in_order(client, header["msg_id"], "execute_reply")]
        assert "stream:got gate" in rest


async def test_concurrent_clients_and_kernels_get_every_message(gserver):
    """Four kernels, two clients each, 20 round trips per kernel in flight together: nothing lost."""
    with gserver.client() as http:
        kids = [start_kernel(http) for _ in range(4)]
    try:
        clients = [await KernelWS.connect(gserver, kid, "v1") for kid in kids]
        watchers = [await KernelWS.connect(gserver, kid, "legacy") for kid in kids]

        async def drive(client: KernelWS) -> int:
            done = 0
            for i in range(20):
                out = await client.execute(f"print({i}); {i} * 2", timeout=60)
                assert out["stream"] == f"{i}\n" and out["result"]["text/plain"] == str(i * 2)
                done += 1
            return done

        async def watch(watcher: KernelWS) -> int:
            # A second client of the kernel sees every output of the other's requests.
            streams = 0
            while streams < 20:
                msg = await watcher.recv(60)
                if msg["header"]["msg_type"] == "stream":
                    streams += 1
            return streams

        results = await asyncio.wait_for(
            asyncio.gather(*(drive(c) for c in clients), *(watch(w) for w in watchers)), 180
        )
        assert results == [20] * 8
        for c in clients + watchers:
            await c.close()
    finally:
        with gserver.client() as http:
            for kid in kids:
                http.delete(f"/api/kernels/{kid}")
