"""The read gate: holds kernel sockets for one window, shares timers, never loses a release."""

from __future__ import annotations

import asyncio

from zasperhub.platform.kernels.coalesce import Holdable, ReadGate


class FakeSockets(Holdable):
    """Records holds and releases with the loop time they happened at."""

    def __init__(self, gate: ReadGate | None = None) -> None:
        super().__init__(gate)
        self.events: list[tuple[str, float]] = []
        self.answering_at_release: list[bool] = []

    def hold(self) -> None:
        self.held = True
        self.events.append(("hold", asyncio.get_running_loop().time()))

    def release(self) -> None:
        self.held = False
        self.answering_at_release.append(self.answering)
        self.events.append(("release", asyncio.get_running_loop().time()))


async def test_outputs_are_held_until_the_deadline_then_stragglers_pass() -> None:
    gate = ReadGate(0.3, output_window=0.2)
    s = FakeSockets()
    gate.hold_for_reply(s)
    assert s.held
    gate.hold_for_reply(s)  # already held: no second hold or timer
    assert [e for e, _ in s.events] == ["hold"]
    while s.held:
        await asyncio.sleep(0.005)
    (_, held_at), (_, released_at) = s.events
    assert released_at - held_at >= 0.3 - 0.001
    # Output read right after the release (the late idle) is not held again...
    gate.after_output(s)
    assert not s.held
    # ...but output nobody asked for, after the free window, is, for one output window.
    await asyncio.sleep(0.25)
    gate.after_output(s)
    assert s.held
    await asyncio.sleep(0.3)
    assert not s.held
    assert s.events[-1][1] - s.events[-2][1] >= 0.2 - 0.001


async def test_the_answer_releases_outputs_at_once_and_leaves_no_timer_behind() -> None:
    gate = ReadGate(10.0)
    s = FakeSockets()
    gate.hold_for_reply(s)
    assert s.held and gate._due is not None
    gate.answer_arrived(s)
    assert not s.held
    # The only hold was released: the timer is cancelled, not left to wake the loop.
    assert gate._due is None and gate._heap == []
    gate.answer_arrived(s)  # not held: nothing happens
    assert [e for e, _ in s.events] == ["hold", "release"]
    # A second kernel's later deadline takes over the timer when the first answers.
    a, b = FakeSockets(), FakeSockets()
    gate.hold_for_reply(a)
    await asyncio.sleep(0.01)
    gate.hold_for_reply(b)
    first = gate._due
    gate.answer_arrived(a)
    assert gate._due is not None and gate._due > first and b.held
    gate.close()
    assert not b.held


async def test_kernels_whose_deadlines_are_close_share_one_wake_up() -> None:
    gate = ReadGate(0.04, output_window=0.02)
    wakes: list[float] = []
    release_due = gate._release_due

    def counted() -> None:
        wakes.append(asyncio.get_running_loop().time())
        release_due()

    gate._release_due = counted  # type: ignore[method-assign]
    a, b = FakeSockets(), FakeSockets()
    gate.hold_for_reply(a)
    gate.hold_for_reply(b)  # due microseconds after a: within half an output window
    await asyncio.sleep(0.1)
    assert len(wakes) == 1 and not (a.held or b.held)
    # A hold due a whole window later gets a wake-up of its own, at its deadline.
    c, d = FakeSockets(), FakeSockets()
    gate.hold_for_reply(c)
    await asyncio.sleep(0.03)
    gate.hold_for_reply(d)
    await asyncio.sleep(0.15)
    assert len(wakes) == 3 and not (c.held or d.held)
    assert d.events[-1][1] - d.events[0][1] >= 0.04 - 0.011


async def test_closed_sockets_are_not_released_and_close_releases_the_rest() -> None:
    gate = ReadGate(0.02)
    gone, kept = FakeSockets(), FakeSockets()
    gate.hold_for_reply(gone)
    gate.hold_for_reply(kept)
    gone.closed = True
    await asyncio.sleep(0.05)
    assert [e for e, _ in gone.events] == ["hold"]
    assert not kept.held
    later = FakeSockets()
    gate.hold_for_reply(later)
    gate.close()
    assert not later.held
    await asyncio.sleep(0.05)
    assert [e for e, _ in later.events] == ["hold", "release"]


async def test_a_zero_window_never_holds() -> None:
    gate = ReadGate(0.0)
    s = FakeSockets()
    gate.hold_for_reply(s)
    gate.after_output(s)
    assert not s.held and s.events == [] and gate._due is None and gate._heap == []


async def test_sockets_told_of_an_answer_release_as_answering_and_a_deadline_does_not() -> None:
    gate = ReadGate(0.01)
    s = FakeSockets(gate)
    s.answer_arrived()  # nothing held: nothing released
    gate.hold_for_reply(s)
    s.answer_arrived()  # the transport flushes these outputs with the answer
    gate.hold_for_reply(s)
    while s.held:  # released by the deadline: the transport flushes them itself
        await asyncio.sleep(0.005)
    assert s.answering_at_release == [True, False] and not s.answering
