"""Execution admission (admission.py): the slot logic alone, then real kernels behind a server with one slot.

With real ipykernels what must hold: a kernel waiting for a slot gets its
cells only when one frees, in order; an error aborts the cells behind it
whether they wait in the server or in the kernel; a long cell stops
counting after `busy_slot_seconds`; a restart frees the slot of the kernel
restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from zasperhub.platform.kernels.admission import Admission
from zasperhub.platform.kernels.kernel import REPLY_AFTER_IDLE

from tests.kernels import late_reply_kernel
from tests.kernels.conftest import start_kernel, start_kernel_server
from tests.kernels.wsclient import KernelWS
from tests.support.server import ServerProcess


class FakeKernel:
    """Counts admissions; `busy` says whether an admission leaves work in flight."""

    def __init__(self, busy: bool = True) -> None:
        self.busy = busy
        self.admitted = 0

    def admit(self) -> bool:
        self.admitted += 1
        return self.busy


async def test_slots_are_taken_first_come_first_served_and_freed_on_release() -> None:
    adm = Admission(limit=2, hold_s=60)
    a, b, c, d = FakeKernel(), FakeKernel(), FakeKernel(), FakeKernel()
    assert adm.try_acquire(a) and adm.try_acquire(b)
    assert adm.try_acquire(a), "a kernel holding a slot keeps it"
    assert not adm.try_acquire(c)
    adm.wait(c)
    adm.wait(d)
    adm.wait(c)
    assert (adm.busy, adm.waiting) == (2, 2)
    assert not adm.try_acquire(FakeKernel()), "nobody jumps the queue"
    adm.release(a)
    assert (c.admitted, d.admitted) == (1, 0) and (adm.busy, adm.waiting) == (2, 1)
    adm.forget(d)
    adm.release(b)
    assert d.admitted == 0 and adm.busy == 1 and adm.waiting == 0
    adm.release(c)
    adm.release(c)
    assert adm.busy == 0
    adm.close()


async def test_an_admission_that_sent_nothing_frees_the_slot_at_once() -> None:
    adm = Admission(limit=1, hold_s=60)
    holder, idle, next_ = FakeKernel(), FakeKernel(busy=False), FakeKernel()
    assert adm.try_acquire(holder)
    adm.wait(idle)
    adm.wait(next_)
    adm.release(holder)
    assert (idle.admitted, next_.admitted) == (1, 1) and adm.busy == 1
    adm.close()


async def test_slots_held_longer_than_hold_s_stop_counting() -> None:
    adm = Admission(limit=1, hold_s=0.2)
    long_cell, other = FakeKernel(), FakeKernel()
    assert adm.try_acquire(long_cell)
    adm.wait(other)
    await asyncio.sleep(0.05)
    assert other.admitted == 0
    await asyncio.sleep(0.4)
    assert other.admitted == 1 and adm.busy == 1, "the long cell's slot expired and went to the waiting kernel"
    adm.release(long_cell)  # its reply comes later: nothing to free, nothing breaks
    assert adm.busy == 1
    adm.close()


# -- with real kernels ----------------------------------------------------------------
#: The one_slot server's bound on waiting messages (all kernels together).
MAX_WAITING = 200
EXECUTE = {"silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}


def one_slot_server(factory: pytest.TempPathFactory, busy_slot_seconds: float, *args: str) -> Iterator[ServerProcess]:
    srv = start_kernel_server(factory.mktemp("admission"), "--KernelRegistry.max_busy_kernels=1",
                              f"--KernelRegistry.busy_slot_seconds={busy_slot_seconds}", *args)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A slot is only freed by an answer or a restart here.
    yield from one_slot_server(tmp_path_factory, 300, f"--KernelRegistry.max_waiting_messages={MAX_WAITING}")


@pytest.fixture(scope="module")
def two_kernels(one_slot: ServerProcess) -> Iterator[tuple[str, str]]:
    with one_slot.client() as http:
        ids = start_kernel(http), start_kernel(http)
        yield ids
        for kid in ids:
            http.delete(f"/api/kernels/{kid}")


async def send_cells(client: KernelWS, cells: list[str]) -> list[str]:
    return [(await client.send("shell", "execute_request", {**EXECUTE, "code": code}))["msg_id"] for code in cells]


async def answers(client: KernelWS, msg_ids: list[str], timeout: float = 60) -> dict[str, tuple[dict[str, Any], float]]:
    """Each request's execute_reply and when it arrived, once its idle has come too."""
    replies: dict[str, tuple[dict[str, Any], float]] = {}
    idle: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(replies) < len(msg_ids) or len(idle) < len(msg_ids):
        msg = await client.recv(max(0.1, deadline - time.monotonic()))
        parent = msg["parent_header"].get("msg_id")
        if parent not in msg_ids:
            continue
        if msg["channel"] == "shell":
            replies[parent] = (msg, time.monotonic())
        elif msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle.add(parent)
    return replies


async def test_a_waiting_kernel_gets_its_cells_in_one_batch_and_an_error_still_aborts_the_rest(
    one_slot: ServerProcess, two_kernels: tuple[str, str]
) -> None:
    first, second = [await KernelWS.connect(one_slot, kid) for kid in two_kernels]
    try:
        busy = await send_cells(first, ["import time; time.sleep(1.5)", "'second cell of the busy kernel'"])
        await asyncio.sleep(0.3)  # the busy kernel holds the only slot
        cells = await send_cells(second, ["x = 1", "1/0", "x = 2", "x = 3"])
        # Read both at once: the times are when each reply arrived.
        got_busy, got = await asyncio.gather(answers(first, busy), answers(second, cells))
        assert [got_busy[m][0]["content"]["status"] for m in busy] == ["ok", "ok"]
        statuses = [got[m][0]["content"]["status"] for m in cells]
        assert statuses == ["ok", "error", "aborted", "aborted"], statuses
        assert got[cells[0]][1] >= got_busy[busy[0]][1], "the waiting kernel started only once the slot was free"
        check = await second.execute("x")
        assert check["result"] == {"text/plain": "1"}, "the cells behind the error never ran"
    finally:
        await first.close()
        await second.close()


async def test_a_restart_frees_the_slot_of_the_kernel_restarted(one_slot: ServerProcess, two_kernels: tuple[str, str]) -> None:
    first, second = [await KernelWS.connect(one_slot, kid) for kid in two_kernels]
    try:
        await send_cells(first, ["import time; time.sleep(60)"])
        await asyncio.sleep(0.5)
        waiting = await send_cells(second, ["'ran after the restart'"])
        await asyncio.sleep(0.5)
        with one_slot.client() as http:
            r = http.post(f"/api/kernels/{two_kernels[0]}/restart")
            assert r.status_code == 200, r.text
        got = await answers(second, waiting, timeout=60)
        assert got[waiting[0]][0]["content"]["status"] == "ok"
    finally:
        await first.close()
        await second.close()


@pytest.fixture(scope="module")
def short_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from one_slot_server(tmp_path_factory, 0.5)


async def test_a_long_cell_stops_holding_its_slot(short_slot: ServerProcess) -> None:
    with short_slot.client() as http:
        kids = start_kernel(http), start_kernel(http)
    long_, short = [await KernelWS.connect(short_slot, kid) for kid in kids]
    try:
        slow = await send_cells(long_, ["import time; time.sleep(6)"])
        await asyncio.sleep(0.3)
        quick = await send_cells(short, ["2 + 2"])
        got_quick, got_slow = await asyncio.gather(answers(short, quick, timeout=30), answers(long_, slow, timeout=60))
        assert got_quick[quick[0]][1] < got_slow[slow[0]][1], "the short cell did not wait for the long one"
    finally:
        await long_.close()
        await short.close()
        with short_slot.client() as http:
            for kid in kids:
                http.delete(f"/api/kernels/{kid}")


async def test_cells_sent_while_a_kernel_executes_wait_and_are_aborted_if_it_fails(
    one_slot: ServerProcess, two_kernels: tuple[str, str]
) -> None:
    """The cells wait in the server (the kernel is executing); the failure answers them `aborted`."""
    client = await KernelWS.connect(one_slot, two_kernels[0])
    try:
        failing = await send_cells(client, ["y = 1; import time; time.sleep(1.0); 1/0"])
        await asyncio.sleep(0.3)
        behind = await send_cells(client, ["y = 2", "y = 3"])
        also = await client.send("shell", "complete_request", {"code": "impo", "cursor_pos": 4})
        got = await answers(client, failing + behind)
        assert [got[m][0]["content"]["status"] for m in failing + behind] == ["error", "aborted", "aborted"]
        assert got[failing[0]][1] <= got[behind[0]][1] <= got[behind[1]][1], "replies in the order the cells were sent"
        reply = await client.wait_for(lambda m: m["parent_header"].get("msg_id") == also["msg_id"] and m["channel"] == "shell")
        assert "import" in reply["content"]["matches"], "a completion waiting behind them is still answered"
        assert (await client.execute("y"))["result"] == {"text/plain": "1"}
        done = await send_cells(client, ["y = 4"])
        assert (await answers(client, done))[done[0]][0]["content"]["status"] == "ok", "later cells run normally"
    finally:
        await client.close()


async def test_past_the_waiting_bound_everything_goes_to_the_kernel_in_order(
    one_slot: ServerProcess, two_kernels: tuple[str, str]
) -> None:
    """More cells than a kernel may keep waiting: none is dropped or reordered, the kernel queues them."""
    busy, flood = [await KernelWS.connect(one_slot, kid) for kid in two_kernels]
    try:
        slow = await send_cells(busy, ["import time; time.sleep(2)"])
        await asyncio.sleep(0.3)
        count = MAX_WAITING + 40
        cells = await send_cells(flood, ["n = 0"] + [f"n = {i}" for i in range(1, count)])
        got, got_slow = await asyncio.gather(answers(flood, cells, timeout=120), answers(busy, slow))
        assert got[cells[0]][1] < got_slow[slow[0]][1], "past the bound they went on without waiting for the slot"
        assert all(got[m][0]["content"]["status"] == "ok" for m in cells)
        counts = [got[m][0]["content"]["execution_count"] for m in cells]
        assert counts == sorted(counts) and len(set(counts)) == count, "executed once each, in the order sent"
        assert (await flood.execute("n"))["result"] == {"text/plain": str(count - 1)}
    finally:
        await busy.close()
        await flood.close()


def test_which_failures_abort_the_cells_behind() -> None:
    from zasperhub.platform.kernels.kernel import _stops_on_error

    assert _stops_on_error(b'{"code": "1/0", "silent": false, "stop_on_error": true}')
    assert _stops_on_error(b'{"code": "1/0"}'), "ipykernel's default"
    assert not _stops_on_error(b'{"code": "1/0", "stop_on_error": false}')
    assert not _stops_on_error(b'{"code":"1/0","silent":true}')
    assert _stops_on_error(b'{"code": "d = {\\"silent\\": true, \\"stop_on_error\\": false}"}'), "the code's own text does not count"
    # Whitespace a client's JSON encoder may put around the colon, and a key seen twice.
    assert not _stops_on_error(b'{\n  "stop_on_error" :\tfalse\n}')
    assert not _stops_on_error(b'{"code": "x", "silent":   true}')
    assert not _stops_on_error(b'{"user_expressions": {"silent": 1}, "silent": true}')
    assert _stops_on_error(b'{"silent": false, "stop_on_error": true, "x": "\\"silent\\": true"}')


@pytest.fixture(scope="module")
def late_reply(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("late-reply")
    late_reply_kernel.install_kernelspec(base / "data")
    srv = start_kernel_server(base, "--KernelRegistry.max_busy_kernels=1", "--KernelRegistry.busy_slot_seconds=300")
    yield srv
    srv.stop()


@contextlib.asynccontextmanager
async def late_reply_client(server: ServerProcess) -> AsyncIterator[KernelWS]:
    """A new late-reply kernel and a client connected to it; both gone afterwards."""
    with server.client() as http:
        kid = start_kernel(http, late_reply_kernel.KERNEL_NAME)
    client = await KernelWS.connect(server, kid)
    try:
        yield client
    finally:
        await client.close()
        with server.client() as http:
            http.delete(f"/api/kernels/{kid}")


async def test_a_failed_cells_idle_read_before_its_reply_still_aborts_what_waits(late_reply: ServerProcess) -> None:
    """The server may read a cell's idle (iopub) before its reply (shell): what waits
    behind the cell must still wait for the reply, which says whether it failed."""
    async with late_reply_client(late_reply) as client:
        failing = await send_cells(client, ["raise RuntimeError('failed on purpose')"])
        await asyncio.sleep(0.2)  # the kernel is executing it: what follows waits in the server
        behind = await send_cells(client, ["'behind 1'", "'behind 2'"])
        got = await answers(client, failing + behind, timeout=30)
        assert [got[m][0]["content"]["status"] for m in failing + behind] == ["error", "aborted", "aborted"]
        after = await send_cells(client, ["'after'"])
        assert (await answers(client, after, timeout=30))[after[0]][0]["content"]["status"] == "ok"
        # A reply that never comes: the idle alone settles the cell, later.
        await send_cells(client, ["noreply"])
        await asyncio.sleep(0.2)
        behind = await send_cells(client, ["'behind 3'"])
        sent = time.monotonic()
        got = await answers(client, behind, timeout=30)
        assert got[behind[0]][0]["content"]["status"] == "ok"
        assert got[behind[0]][1] - sent >= REPLY_AFTER_IDLE - 0.5, "it waited for the lost reply first"


async def test_an_idle_whose_parent_msg_id_is_not_a_string_still_reaches_clients(late_reply: ServerProcess) -> None:
    async with late_reply_client(late_reply) as client:
        cell = await send_cells(client, ["oddparent"])
        odd = await client.wait_for(lambda m: m["channel"] == "iopub" and m["parent_header"].get("msg_id") == ["not", "a", "string"])
        assert odd["content"]["execution_state"] == "idle"
        assert (await answers(client, cell, timeout=30))[cell[0]][0]["content"]["status"] == "ok"
