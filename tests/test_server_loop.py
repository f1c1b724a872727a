"""The server loop's lean pass behaves as asyncio's own: same order, same timers, same error reports."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import pytest
from zasperhub.platform import server_loop
from zasperhub.platform.kernels.deadline import make_deadline

pytestmark = pytest.mark.skipif(not server_loop.lean_pass_available(), reason="no lean pass on this platform")


def _run(program: Any, lean: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("ZASPERHUB_LEAN_LOOP", "1" if lean else "0")

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, server_loop.ServerLoop) and loop.lean is lean
        return await program(loop)

    return server_loop.run(main())


async def _program(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Callbacks, timers, readers, writers, a thread's wake-up and a deadline, traced in the order they run."""
    trace: list[Any] = []
    done = loop.create_future()

    def chain(n: int) -> None:
        trace.append(("soon", n))
        if n < 3:
            loop.call_soon(chain, n + 1)  # runs on the next pass, after the timers due by then

    loop.call_soon(chain, 0)
    loop.call_soon(trace.append, ("soon", "b"))
    for delay in (0.03, 0.01, 0.02, 0.01):
        loop.call_later(delay, trace.append, ("timer", delay))
    loop.call_later(0.015, trace.append, ("cancelled",)).cancel()
    # Enough cancelled timers that asyncio rebuilds its heap instead of popping its head.
    for handle in [loop.call_later(5 + i / 1000, trace.append, ("never",)) for i in range(150)]:
        handle.cancel()
    late = [loop.call_later(0.04 + i / 1000, trace.append, ("late", i)) for i in range(3)]
    late[1].cancel()

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)

    def readable() -> None:
        trace.append(("read", a.recv(100)))
        loop.remove_reader(a)

    def writable() -> None:
        trace.append(("writable",))
        loop.remove_writer(b)
        b.send(b"ping")

    loop.add_reader(a, readable)
    loop.call_later(0.05, loop.add_writer, b, writable)

    # A reader whose handle was cancelled is dropped when its descriptor next polls readable.
    c, d = socket.socketpair()
    loop.add_reader(c, trace.append, ("never",))
    loop._selector.get_key(c).data[0].cancel()  # type: ignore[attr-defined]
    d.send(b"x")

    fired = make_deadline(loop, lambda: trace.append(("deadline",)))
    fired.arm(loop.time() + 0.025)

    def from_thread() -> None:
        time.sleep(0.08)
        loop.call_soon_threadsafe(done.set_result, "woken")

    threading.Thread(target=from_thread).start()
    trace.append(("await", await done))
    await asyncio.gather(asyncio.sleep(0.01), asyncio.sleep(0))
    trace.append(("cancelled reader dropped", c.fileno() not in loop._selector.get_map()))  # type: ignore[attr-defined]
    trace.append(("timers left", sum(not h.cancelled() for h in loop._scheduled)))  # type: ignore[attr-defined]
    # Cancelled timers still on the heap: the same housekeeping leaves the same heap.
    trace.append(("heap", len(loop._scheduled)))  # type: ignore[attr-defined]
    fired.close()
    for s in (a, b, c, d):
        s.close()
    return trace


def test_the_lean_pass_runs_a_program_as_asyncio_does(monkeypatch: pytest.MonkeyPatch) -> None:
    lean = _run(_program, True, monkeypatch)
    stock = _run(_program, False, monkeypatch)
    assert lean == stock
    # The program did what it says, so the comparison is not of two empty traces.
    assert lean[:5] == [("soon", 0), ("soon", "b"), ("soon", 1), ("soon", 2), ("soon", 3)]
    assert [e for e in lean if e[0] == "timer"] == [("timer", 0.01), ("timer", 0.01), ("timer", 0.02), ("timer", 0.03)]
    assert ("deadline",) in lean and ("read", b"ping") in lean and ("writable",) in lean
    assert ("late", 1) not in lean and ("late", 2) in lean
    assert ("never",) not in lean and ("cancelled",) not in lean
    assert lean[-4:-1] == [("await", "woken"), ("cancelled reader dropped", True), ("timers left", 0)]


async def _raising(loop: asyncio.AbstractEventLoop) -> list[Any]:
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reports.append(context))

    def broken(arg: int) -> None:
        raise ValueError(f"bad {arg}")

    handle = loop.call_soon(broken, 7)
    timer = loop.call_later(0.001, broken, 8)
    after = loop.create_future()
    loop.call_later(0.01, after.set_result, "still running")
    result = await after
    assert reports[0]["handle"] is handle and reports[1]["handle"] is timer
    return [result] + [(r["message"], type(r["exception"]), str(r["exception"])) for r in reports]


def test_a_raising_callback_is_reported_as_asyncio_reports_it(monkeypatch: pytest.MonkeyPatch) -> None:
    lean = _run(_raising, True, monkeypatch)
    assert lean == _run(_raising, False, monkeypatch)
    assert lean[0] == "still running" and lean[1][2] == "bad 7" and lean[2][2] == "bad 8"
    assert lean[1][0].startswith("Exception in callback ") and "broken" in lean[1][0]


@pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
def test_system_exit_and_interrupt_leave_the_loop(monkeypatch: pytest.MonkeyPatch, exc: type[BaseException]) -> None:
    async def program(loop: asyncio.AbstractEventLoop) -> None:
        def stop() -> None:
            raise exc()

        loop.call_soon(stop)
        await asyncio.sleep(1)

    with pytest.raises(exc):
        _run(program, True, monkeypatch)


def test_a_handle_of_another_type_runs_its_own_way(monkeypatch: pytest.MonkeyPatch) -> None:
    class Traced(asyncio.Handle):
        def _run(self) -> None:
            ran.append("own _run")
            super()._run()

    ran: list[str] = []

    async def program(loop: asyncio.AbstractEventLoop) -> None:
        loop._ready.append(Traced(ran.append, ("callback",), loop))  # type: ignore[attr-defined]
        await asyncio.sleep(0)

    _run(program, True, monkeypatch)
    assert ran == ["own _run", "callback"]


def test_debug_mode_gets_asyncios_pass_and_its_slow_callback_warning(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def program(loop: asyncio.AbstractEventLoop) -> None:
        loop.set_debug(True)
        loop.slow_callback_duration = 0.005
        loop.call_soon(time.sleep, 0.02)
        await asyncio.sleep(0.01)
        loop.set_debug(False)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        _run(program, True, monkeypatch)
    assert any("Executing" in r.getMessage() and "took" in r.getMessage() for r in caplog.records)


def test_the_switch_turns_the_lean_pass_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZASPERHUB_LEAN_LOOP", "0")
    assert not server_loop.lean_pass_available()
    loop = server_loop.ServerLoop()
    try:
        assert not loop.lean
    finally:
        loop.close()
