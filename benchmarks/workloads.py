"""Workloads run inside the load-client process.

Each workload sets up its sessions and WebSockets, tells the orchestrator it
is ready (so CPU is measured over the load only), runs, reports, checks that
every kernel still answers, and deletes its sessions.  The orchestrator talks
to this process over a ``multiprocessing`` pipe: ``client_main`` is the
process target.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from benchmarks.loadgen import KernelClient, ServerAPI
from benchmarks.stats import LoadStats, percentiles

EXECUTE = {"code": "2+2", "silent": False, "store_history": False, "user_expressions": {},
           "allow_stdin": False, "stop_on_error": False}


class Phases:
    """Blocking hand-shakes with the orchestrator, awaited off the event loop."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    async def mark(self, name: str, info: dict[str, Any] | None = None) -> Any:
        self.pipe.send((name, info or {}))
        return await asyncio.get_running_loop().run_in_executor(None, self.pipe.recv)


def execute(code: str) -> dict[str, Any]:
    """execute_request content for ``code`` (same flags as the load)."""
    return dict(EXECUTE, code=code)


async def open_kernels(api: ServerAPI, n: int, wire: str, kernel: str, stats: LoadStats,
                       concurrency: int = 4) -> tuple[list[KernelClient], list[str]]:
    """Create ``n`` sessions and connect one WebSocket each, ready to execute."""
    gate = asyncio.Semaphore(concurrency)
    sessions: list[str] = []

    async def one(i: int) -> KernelClient:
        async with gate:
            model = await api.create_session(f"bench-{i}-{time.monotonic_ns()}.ipynb", kernel)
            sessions.append(model["id"])
            client = KernelClient(api, model["kernel"]["id"], wire, stats)
            await client.connect()
            # The kernel may still be starting: the request waits in ZMQ.
            await client.call("kernel_info_request", {}, timeout=120)
            return client

    clients = await asyncio.gather(*(one(i) for i in range(n)))
    return list(clients), sessions


async def recovery_check(clients: list[KernelClient], limit: float = 2.0, timeout: float = 10.0) -> dict[str, Any]:
    """After the load: how fast does every kernel answer ``kernel_info`` on control?

    Only the reply counts: a kernel's iopub (and so its idle) may still be
    behind a backlog of output, which is not a liveness problem.
    """

    async def probe(c: KernelClient) -> float | None:
        try:
            return await c.call("kernel_info_request", {}, channel="control", timeout=timeout, reply_only=True)
        except (asyncio.TimeoutError, ConnectionError, ConnectionClosed):
            return None

    times = await asyncio.gather(*(probe(c) for c in clients))
    answered = [t for t in times if t is not None]
    return {"kernels": len(clients), "answered": len(answered),
            "answered_within_limit": sum(1 for t in answered if t <= limit),
            "limit_s": limit, "slowest_s": round(max(answered), 3) if answered else None}


async def iopub_sentinel(clients: list[KernelClient], timeout: float) -> int:
    """Send kernel_info on control and wait for its iopub idle, per kernel.

    A kernel's iopub is one ordered stream, so once the sentinel's idle has
    arrived every earlier idle has either arrived or was lost: it turns
    "missing so far" into "lost".  Returns how many sentinels came back.
    """

    async def one(c: KernelClient) -> bool:
        try:
            await c.call("kernel_info_request", {}, channel="control", timeout=timeout)
            return True
        except (asyncio.TimeoutError, ConnectionError, ConnectionClosed):
            return False

    return sum(await asyncio.gather(*(one(c) for c in clients)))


async def teardown(api: ServerAPI, clients: list[KernelClient], sessions: list[str], stats: LoadStats) -> dict[str, Any]:
    """Note dead kernels, close the WebSockets and delete the sessions."""
    states = await asyncio.gather(*(api.kernel_state(c.kernel_id) for c in clients), return_exceptions=True)
    for c, state in zip(clients, states):
        if state == "dead" or (isinstance(state, str) and state.startswith("http-")):
            stats.dead_kernels.add(c.kernel_id)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    codes = await asyncio.gather(*(api.delete_session(s) for s in sessions), return_exceptions=True)
    return {"deleted": sum(1 for c in codes if c == 204), "sessions": len(sessions)}


def pending_counts(clients: list[KernelClient]) -> tuple[int, int]:
    """(requests without reply, replied requests without idle) over ``clients``."""
    no_reply = no_idle = 0
    for c in clients:
        a, b = c.unanswered()
        no_reply += a
        no_idle += b
    return no_reply, no_idle


async def drain(stats: LoadStats, timeout: float) -> float:
    """Wait until every counted request has its reply and idle, at most ``timeout`` s."""
    start = time.monotonic()
    # Counters, not a scan of the pending tables: those can hold 10^5 entries under overload.
    while time.monotonic() - start < timeout and not stats.sent == stats.replies == stats.idles:
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def open_loop(client: KernelClient, rate: float, start: float, end: float, stats: LoadStats) -> None:
    """Send ``2+2`` at ``rate``/s from ``start`` to ``end`` regardless of replies."""
    interval = 1.0 / rate
    due = start
    client.window_end = end
    while due < end:
        if time.perf_counter() >= end:
            # Sends blocked by back-pressure past the window are not made up
            # afterwards (that would stretch the window); they are counted.
            stats.unsent += int((end - due) / interval) + 1
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stats.send_lag.append(max(0.0, time.perf_counter() - due))
        try:
            await client.request("execute_request", EXECUTE, counted=True)
        except ConnectionClosed:
            return
        due += interval


async def closed_loop(client: KernelClient, inflight: int, end: float) -> None:
    """Keep ``inflight`` requests outstanding until ``end`` (server-ceiling load)."""
    slots = asyncio.Semaphore(inflight)
    client.window_end = end
    while time.perf_counter() < end:
        await slots.acquire()
        try:
            await client.request("execute_request", EXECUTE, counted=True, on_reply=slots.release)
        except ConnectionClosed:
            return


async def steady(api: ServerAPI, spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """N kernels: open-loop at R/s each, or closed-loop with ``inflight`` each."""
    stats = LoadStats()
    clients, sessions = await open_kernels(api, spec["kernels"], spec["wire"], spec["kernel_name"], stats)
    await phases.mark("ready")
    window = spec["window"]
    start = time.perf_counter() + 0.05
    end = start + window
    if spec.get("inflight"):
        tasks = [closed_loop(c, spec["inflight"], end) for c in clients]
    elif not spec["rate"]:
        # Connected but silent: the server's fixed cost per second.
        tasks = [asyncio.sleep(window)]
    else:
        n, rate = len(clients), spec["rate"]
        # Stagger kernels so requests are spread evenly over each interval.
        tasks = [open_loop(c, rate, start + i / (n * rate), end, stats) for i, c in enumerate(clients)]
    await asyncio.gather(*tasks)
    # Liveness right when the load stops, on control (the shell queue may
    # still hold a backlog under saturation); then wait for late replies.
    recovery = await recovery_check(clients)
    drained = await drain(stats, spec["drain"])
    await phases.mark("loaded")
    sentinels = await iopub_sentinel(clients, spec["drain"])
    no_reply, no_idle = pending_counts(clients)
    result = stats.summary()
    result.update(unanswered=no_reply, iopub_idle_missing=no_idle, iopub_sentinels=sentinels,
                  window_s=window, drain_s=round(drained, 3),
                  replies_per_s=round(stats.replies_in_window / window, 2), recovery=recovery)
    result["teardown"] = await teardown(api, clients, sessions, stats)
    result["dead_kernels"] = len(stats.dead_kernels)
    return result


def stream_code(seconds: float, chunk: int = 100_000, per_s: int = 10) -> str:
    """Kernel code that prints ``chunk`` characters ``per_s`` times a second."""
    return (
        "import sys, time\n"
        f"_c = 'y' * {chunk - 1} + '\\n'\n_t = time.monotonic()\n"
        f"for _i in range({int(seconds * per_s)}):\n"
        "    sys.stdout.write(_c); sys.stdout.flush()\n"
        f"    time.sleep(max(0.0, _t + (_i + 1) / {per_s} - time.monotonic()))\n"
    )


async def watched_execute(driver: KernelClient, watchers: list[KernelClient], code: str, timeout: float) -> dict[str, Any]:
    """Run ``code`` on ``driver``; time when each client saw the final idle."""
    done: dict[int, float] = {}
    everyone = [driver, *watchers]
    before = [c.stream_chars for c in everyone]
    start = time.perf_counter()
    msg_id, future = await driver.request("execute_request", execute(code), wait=True)

    def seen(idx: int) -> Callable[[Any, float], None]:
        def on_msg(msg: Any, now: float) -> None:
            if msg.execution_state == "idle":
                done[idx] = now - start
        return on_msg

    for idx, w in enumerate(watchers, 1):
        w.watch[msg_id] = seen(idx)
    assert future is not None
    try:
        await asyncio.wait_for(future, timeout)
        done[0] = time.perf_counter() - start
    except (asyncio.TimeoutError, ConnectionError):
        pass
    # Watchers may lag behind the driver; give them a bounded moment.
    limit = time.monotonic() + min(timeout, 30)
    while len(done) < len(everyone) and time.monotonic() < limit:
        await asyncio.sleep(0.05)
    for w in watchers:
        w.watch.pop(msg_id, None)
    return {"idle_seen_s": [round(done[i], 3) if i in done else None for i in range(len(everyone))],
            "stream_chars": [c.stream_chars - b for c, b in zip(everyone, before)]}


async def large_output(api: ServerAPI, spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """10 MB prints, then a 1 MB/s stream, each watched by several clients."""
    stats = LoadStats()
    (driver,), sessions = await open_kernels(api, 1, spec["wire"], spec["kernel_name"], stats)
    watchers = [KernelClient(api, driver.kernel_id, spec["wire"], stats) for _ in range(spec.get("watchers", 3))]
    for w in watchers:
        await w.connect()
    await phases.mark("ready")
    size = spec.get("print_bytes", 10_000_000)
    prints = [await watched_execute(driver, watchers, f"print('x' * {size})", 120) for _ in range(spec.get("repeats", 2))]
    seconds = spec["window"]
    stream = await watched_execute(driver, watchers, stream_code(seconds), seconds + 60)
    await phases.mark("loaded")
    recovery = await recovery_check([driver, *watchers])
    result = stats.summary()
    result.update(
        print_bytes=size, prints=prints, print_expected_chars=size + 1,
        stream_seconds=seconds, stream=stream, stream_expected_chars=int(seconds * 10) * 100_000,
        recovery=recovery,
    )
    result["teardown"] = await teardown(api, [driver, *watchers], sessions, stats)
    result["dead_kernels"] = len(stats.dead_kernels)
    return result


async def slow_consumer(api: ServerAPI, spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """One kernel streams (default 1 MB/s) to a normal and a stalled client while others run 10/s."""
    stats = LoadStats()
    clients, sessions = await open_kernels(api, 1 + spec["kernels"], spec["wire"], spec["kernel_name"], stats)
    streamer, others = clients[0], clients[1:]
    stalled = KernelClient(api, streamer.kernel_id, spec["wire"], LoadStats(), max_queue=1)
    await stalled.connect(read=False)
    await phases.mark("ready")
    window = spec["window"]
    start = time.perf_counter() + 0.05
    end = start + window
    loads = [open_loop(c, spec["rate"], start + i / (len(others) * spec["rate"]), end, stats) for i, c in enumerate(others)]
    chunk = spec.get("stream_chunk", 100_000)
    stream_task = asyncio.ensure_future(watched_execute(streamer, [], stream_code(window, chunk), window + 60))
    await asyncio.gather(*loads)
    drained = await drain(stats, spec["drain"])
    stream = await stream_task
    # The stalled client now reads what is left: did the server close it?
    stalled.start_reading()
    await asyncio.sleep(1.0)
    stalled_state = {"closed_by_server": stalled.close_info is not None, "close": stalled.close_info,
                     "frames_read_after_stall": stalled.stats.frames, "stream_chars": stalled.stream_chars}
    await phases.mark("loaded")
    sentinels = await iopub_sentinel(others, spec["drain"])
    no_reply, no_idle = pending_counts(others)
    recovery = await recovery_check(clients)
    result = stats.summary()
    result.update(unanswered=no_reply, iopub_idle_missing=no_idle, iopub_sentinels=sentinels,
                  window_s=window, drain_s=round(drained, 3),
                  replies_per_s=round(stats.replies_in_window / window, 2), stream=stream,
                  stream_expected_chars=int(window * 10) * chunk, stream_bytes_per_s=10 * chunk,
                  stalled=stalled_state, recovery=recovery)
    await stalled.close()
    result["teardown"] = await teardown(api, clients, sessions, stats)
    result["dead_kernels"] = len(stats.dead_kernels)
    return result


async def kernel_start(api: ServerAPI, spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    """POST /api/sessions → first iopub idle, one kernel at a time."""
    await phases.mark("ready")
    stats = LoadStats()
    post, ready = [], []
    for i in range(spec.get("repeats", 3)):
        t0 = time.perf_counter()
        model = await api.create_session(f"start-{i}-{time.monotonic_ns()}.ipynb", spec["kernel_name"])
        post.append(time.perf_counter() - t0)
        client = KernelClient(api, model["kernel"]["id"], spec["wire"], stats)
        await client.connect()
        await client.call("kernel_info_request", {}, timeout=120)
        ready.append(time.perf_counter() - t0)
        await client.close()
        await api.delete_session(model["id"])
    await phases.mark("loaded")
    return {"post_session_ms": percentiles(post), "first_idle_ms": percentiles(ready), "repeats": len(post),
            "post_session_s": [round(x, 4) for x in post], "first_idle_s": [round(x, 4) for x in ready],
            "dropped_ws": len(stats.dropped_ws), "dead_kernels": len(stats.dead_kernels)}


WORKLOADS: dict[str, Callable[[ServerAPI, dict[str, Any], Phases], Awaitable[dict[str, Any]]]] = {
    "steady": steady, "large_output": large_output, "slow_consumer": slow_consumer, "kernel_start": kernel_start,
}


async def _run(spec: dict[str, Any], phases: Phases) -> dict[str, Any]:
    api = ServerAPI(spec["url"], spec["token"])
    try:
        return await WORKLOADS[spec["workload"]](api, spec, phases)
    finally:
        await api.close()


def raise_priority(nice: int = -5) -> int:
    """Run the measuring side (client, samplers) ahead of kernels, if allowed.

    At saturation 64 busy kernels share 2 cores with everything else; an
    unprioritised client would get ~1/60 of the CPU and measure itself.
    The servers under test are started at the normal priority (see
    ``servers.py``).  Returns the resulting nice value.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError:
        pass  # not privileged: measure anyway, the record shows client CPU
    # A nice value only ranks threads inside one scheduler autogroup, and
    # every kernel (a session of its own) is an autogroup: against 64 busy
    # kernels the client's group would still get ~1/65 of the CPU.  So the
    # client's group gets the same nice (this needs the same privilege).
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(os.getpriority(os.PRIO_PROCESS, 0)))
    except OSError:
        pass  # no autogroups, or not privileged
    return os.getpriority(os.PRIO_PROCESS, 0)


def client_main(spec: dict[str, Any], pipe: Any) -> None:
    """Process target: run one workload and send ("result", …) or ("error", …)."""
    phases = Phases(pipe)
    raise_priority()
    try:
        result = asyncio.run(_run(spec, phases))
    except BaseException as exc:  # report every failure to the orchestrator
        try:
            pipe.send(("error", {"error": f"{type(exc).__name__}: {exc}"}))
        except OSError:
            pass  # the orchestrator already gave up on us
        raise
    pipe.send(("result", result))
