"""The read gate's deadline: carried by the server loop's selector, an asyncio timer elsewhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from zasperhub.platform import server_loop
from zasperhub.platform.kernels import deadline
from zasperhub.platform.kernels.coalesce import ReadGate
from zasperhub.platform.kernels.deadline import _SelectorDeadline, _TimerHandleDeadline, make_deadline


@pytest.fixture(autouse=True, params=["lean pass", "asyncio's pass"])
def _loop_pass(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test on both passes of the server loop: each checks the selector's deadline in its own code."""
    monkeypatch.setenv("ZASPERHUB_LEAN_LOOP", "1" if request.param == "lean pass" else "0")


def _on_server_loop(body: Callable[[], object]) -> object:
    """Run the coroutine function `body` on a loop made as the server makes it."""
    return server_loop.run(body())  # type: ignore[arg-type]


def _both(test: Callable[[Callable[[asyncio.AbstractEventLoop, Callable[[], None]], deadline.Deadline]], object]):
    """Run an async test once per form: the selector's deadline on the server loop, a timer on any loop."""
    def selector_form(loop: asyncio.AbstractEventLoop, cb: Callable[[], None]) -> deadline.Deadline:
        d = make_deadline(loop, cb)
        assert isinstance(d, _SelectorDeadline)
        return d

    def timer_form(loop: asyncio.AbstractEventLoop, cb: Callable[[], None]) -> deadline.Deadline:
        return _TimerHandleDeadline(loop, cb)

    @pytest.mark.parametrize("form", ["selector", "timer"])
    def wrapper(form: str) -> None:
        server_loop.run(test(selector_form if form == "selector" else timer_form))  # type: ignore[arg-type]

    wrapper.__name__ = test.__name__
    return wrapper


@_both
async def test_fires_once_at_its_time_and_not_before(make) -> None:  # noqa: ANN001
    fired: list[float] = []
    d = make(asyncio.get_running_loop(), lambda: fired.append(time.monotonic()))
    try:
        when = time.monotonic() + 0.05
        d.arm(when)
        await asyncio.sleep(0.02)
        assert fired == []
        await asyncio.sleep(0.1)
        assert len(fired) == 1 and fired[0] >= when - 0.001
        await asyncio.sleep(0.05)
        assert len(fired) == 1  # one-shot
    finally:
        d.close()


@_both
async def test_rearming_moves_it_and_disarming_cancels_it(make) -> None:  # noqa: ANN001
    fired: list[float] = []
    d = make(asyncio.get_running_loop(), lambda: fired.append(time.monotonic()))
    try:
        d.arm(time.monotonic() + 0.02)
        later = time.monotonic() + 0.08
        d.arm(later)  # replaces the first time
        await asyncio.sleep(0.05)
        assert fired == []
        await asyncio.sleep(0.08)
        assert len(fired) == 1 and fired[0] >= later - 0.001
        d.arm(time.monotonic() + 0.02)
        d.disarm()
        d.disarm()  # idempotent
        await asyncio.sleep(0.06)
        assert len(fired) == 1
        # A time already past fires at the next pass of the loop.
        d.arm(time.monotonic() - 1.0)
        await asyncio.sleep(0.02)
        assert len(fired) == 2
    finally:
        d.close()


@_both
async def test_a_deadline_ends_a_wait_with_no_other_timer_pending(make) -> None:  # noqa: ANN001
    """The loop would otherwise sleep until I/O: the deadline alone must wake it."""
    done = asyncio.get_running_loop().create_future()
    d = make(asyncio.get_running_loop(), lambda: done.set_result(time.monotonic()))
    try:
        start = time.monotonic()
        d.arm(start + 0.03)
        fired_at = await asyncio.wait_for(done, 2.0)
        assert 0.03 - 0.001 <= fired_at - start < 1.0
    finally:
        d.close()


def test_an_expiry_cleared_before_its_callback_runs_does_not_fire() -> None:
    """Expired while the loop was busy, then disarmed in the same pass: no call."""
    async def body() -> None:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        d = make_deadline(loop, lambda: fired.append(1))
        assert isinstance(d, _SelectorDeadline)

        def busy_then_disarm() -> None:
            time.sleep(0.02)  # the deadline passes while this callback runs
            loop.call_soon(d.disarm)  # queued before the selector's fire: runs first

        d.arm(time.monotonic() + 0.005)
        loop.call_soon(busy_then_disarm)
        await asyncio.sleep(0.05)
        d.close()
        assert fired == []

    _on_server_loop(body)


def test_one_selector_deadline_per_loop_and_close_gives_it_back() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        first = make_deadline(loop, lambda: None)
        second = make_deadline(loop, lambda: None)
        assert isinstance(first, _SelectorDeadline) and isinstance(second, _TimerHandleDeadline)
        # The server loop's clock is time.monotonic itself, so deadlines and loop timers agree.
        assert type(loop).time is time.monotonic and abs(loop.time() - time.monotonic()) < 0.01
        first.close()
        first.close()  # idempotent
        first.arm(time.monotonic())  # harmless after close
        third = make_deadline(loop, lambda: None)
        assert isinstance(third, _SelectorDeadline)
        third.close()

    _on_server_loop(body)


async def test_other_loops_get_an_asyncio_timer() -> None:
    loop = asyncio.get_running_loop()  # pytest's loop, not a ServerLoop
    assert isinstance(make_deadline(loop, lambda: None), _TimerHandleDeadline)

    class OwnClock(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 42.0

    other = OwnClock()
    try:
        # A selector loop on another clock too: its timers run on that clock.
        assert isinstance(make_deadline(other, lambda: None), _TimerHandleDeadline)
    finally:
        other.close()


def test_the_read_gate_on_the_server_loop_uses_no_asyncio_timer() -> None:
    """A hold and its early release leave nothing on the loop's timer heap; a late one is released."""
    async def body() -> None:
        loop = asyncio.get_running_loop()
        gate = ReadGate(0.03)

        class Sockets:
            held = closed = answering = False
            hold_token = 0
            free_until = 0.0

            def hold(self) -> None:
                self.held = True

            def release(self) -> None:
                self.held = False

        scheduled_before = len(loop._scheduled)  # type: ignore[attr-defined]
        s = Sockets()
        gate.hold_for_reply(s)  # type: ignore[arg-type]
        assert isinstance(gate._deadline, _SelectorDeadline)
        assert len(loop._scheduled) == scheduled_before  # type: ignore[attr-defined]
        gate.answer_arrived(s)  # type: ignore[arg-type]
        assert not s.held and gate._due is None
        gate.hold_for_reply(s)  # type: ignore[arg-type]
        await asyncio.sleep(0.06)
        assert not s.held  # released at its deadline
        gate.close()

    _on_server_loop(body)
