"""What the kernels answer with no server in between: the reference for saturation.

The saturation scenarios (``benchmarks.run --scenarios saturation``) count
execute replies per second *through a server*.  On a 2-core machine that
number is mostly the kernels', so it only means something next to what the
same kernels do with nothing in between.  This runs the same workload — N
ipykernels from the harness's isolated environment, open-loop
``workloads.EXECUTE`` (``2+2``) at R per second per kernel, staggered as the
harness staggers them — from one pyzmq client straight to each kernel's
shell and iopub sockets, and reports replies per second in the window, the
kernels' CPU per reply, and whether every request's iopub ``idle`` arrived.

    python -m benchmarks.kernel_capacity --configs 16x100,64x10 --window 20

Options change only *how* the same requests reach the kernels, to see what
that costs them: in bursts (``--send-every``), with outputs read late
(``--iopub-every``) or never subscribed (``--no-iopub``), at most N
unanswered per kernel or in all (``--max-in-flight``,
``--max-total-in-flight``), or as the server's admission sends them
(``--max-busy-kernels N``: a kernel's due requests in one batch once it has
answered all, at most N kernels busy; see platform/kernels/admission.py).
Held requests count from when they are sent, as the harness measures.

The kernels run at the normal priority and the client at the harness's
(nice -5), as with Jupyter Server.  Like every figure here, read it as a
ratio against the servers' runs made the same hour on the same machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
import zmq

from benchmarks.echo_kernel import DELIM
from benchmarks.monitor import cpu_seconds
from benchmarks.report import machine, versions
from benchmarks.scenarios import parse_configs
from benchmarks.servers import BenchEnv
from benchmarks.stats import percentiles
from benchmarks.workloads import EXECUTE, raise_priority
from zasperhub.platform.kernels.ports import assign, make_picker


@dataclass
class Feed:
    """One kernel: its sockets, session, and what was sent and answered."""

    session: Any
    shell: zmq.Socket
    iopub: zmq.Socket
    due: float
    outstanding: dict[str, float] = field(default_factory=dict)  # msg_id -> when it was sent
    held: int = 0  # due, not sent (max_busy)
    held_since: float | None = None  # when the oldest of them fell due

    def send(self, track_idle: bool) -> None:
        """Send one execute_request now; its reply (and idle, if tracked) is then awaited."""
        msg_id = self.session.send(self.shell, "execute_request", EXECUTE)["header"]["msg_id"]
        self.outstanding[msg_id] = time.monotonic()
        if track_idle:
            self.waiting_idle.add(msg_id)
    waiting_idle: set[str] = field(default_factory=set)


def start_kernels(count: int, env: BenchEnv, kernel_name: str = "python3") -> list[Any]:
    """Start `count` kernels from the bench environment and wait until each answers kernel_info."""
    from jupyter_client import KernelManager

    environ = env.environ()  # IPYTHONDIR and the rest: what the servers' kernels see
    # Ports from below the ephemeral range, as zasperhub picks them: jupyter_client's
    # bind-port-0 picks can be taken in the gap before the kernel binds (64 kernels hit it).
    picker = make_picker("")
    managers: list[Any] = []
    try:
        for i in range(count):
            km = KernelManager(kernel_name=kernel_name,
                               connection_file=str(env.base / "runtime" / f"capacity-{os.getpid()}-{i}.json"))
            if picker is not None:
                assign(km, picker)
            km.start_kernel(cwd=str(env.base / "roots"), env=environ)
            managers.append(km)
        for km in managers:
            kc = km.client()
            kc.start_channels()
            try:
                kc.wait_for_ready(timeout=120)
            finally:
                kc.stop_channels()
    except BaseException:
        # e.g. a kernel that lost a port to another between jupyter_client's pick and its bind
        stop_kernels(managers)
        raise
    return managers


def stop_kernels(managers: list[Any]) -> None:
    for km in managers:
        try:
            km.shutdown_kernel(now=True)
        except Exception:  # already gone: nothing left to stop
            pass


def connect(ctx: zmq.Context, km: Any, due: float, subscribe: bool = True) -> Feed:
    """Shell DEALER and iopub SUB to one kernel (the SUB subscribes to nothing unless `subscribe`)."""
    from jupyter_client.session import Session

    info = km.get_connection_info(session=False)
    shell = ctx.socket(zmq.DEALER)
    shell.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    iopub = ctx.socket(zmq.SUB)
    if subscribe:
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
    iopub.connect(f"tcp://{info['ip']}:{info['iopub_port']}")
    return Feed(Session(key=km.session.key, signature_scheme=km.session.signature_scheme), shell, iopub, due)


def _parts(frames: list[bytes]) -> tuple[bytes, bytes, bytes] | None:
    """(header, parent header, content) of a kernel message, or None if it has no such frames."""
    try:
        at = frames.index(DELIM)
        return frames[at + 2], frames[at + 3], frames[at + 5]
    except (ValueError, IndexError):
        return None


def _parent_id(frames: list[bytes]) -> str | None:
    """msg_id of a message's parent header."""
    parts = _parts(frames)
    try:
        return orjson.loads(parts[1]).get("msg_id") if parts is not None else None
    except orjson.JSONDecodeError:
        return None


def _is_idle(frames: list[bytes]) -> bool:
    """Whether a kernel message is an iopub ``status: idle``."""
    parts = _parts(frames)
    return parts is not None and b'"status"' in parts[0] and b'"idle"' in parts[2]


def run_config(kernels: int, rate: float, window: float, drain: float, env: BenchEnv,
               iopub_every: float = 0.0, send_every: float = 0.0, subscribe: bool = True,
               max_in_flight: int = 0, max_total: int = 0, max_busy: int = 0) -> dict[str, Any]:
    """Feed `kernels` kernels at `rate`/s each for `window` s; replies/s, CPU per reply, lost iopub.

    `iopub_every` > 0 reads the iopub sockets only that often during the
    window (as a client or server too busy to keep up does); the outputs
    wait in the sockets' queues meanwhile.  0 reads each as it arrives.
    `send_every` > 0 sends each kernel's requests in bursts that often (what
    arrives from a server short of CPU); 0 sends each one when it is due.
    `subscribe` False subscribes to no iopub message: the kernels' publishers
    then discard every output as it is sent (what a server that loses iopub
    costs the kernels); idles are not counted.
    """
    managers = start_kernels(kernels, env)
    ctx = zmq.Context()
    try:
        procs = [psutil.Process(km.provisioner.process.pid) for km in managers]
        start = time.monotonic() + 1.0  # subscriptions settle before the first request
        interval = 1.0 / rate
        feeds = [connect(ctx, km, start + i / (kernels * rate), subscribe) for i, km in enumerate(managers)]
        poller = zmq.Poller()
        owner: dict[zmq.Socket, Feed] = {}
        for f in feeds:
            poller.register(f.shell, zmq.POLLIN)
            if not iopub_every:
                poller.register(f.iopub, zmq.POLLIN)
            owner[f.shell] = owner[f.iopub] = f
        next_iopub = start + iopub_every
        me = psutil.Process()
        time.sleep(max(0.0, start - time.monotonic()))
        k0, c0 = sum(cpu_seconds(p) for p in procs), cpu_seconds(me)
        end = start + window
        sent = replies = in_window = 0
        waiting: collections.deque[Feed] = collections.deque()  # one entry per due, unsent request
        latency: list[float] = []
        k_window = None
        while True:
            now = time.monotonic()
            if now < end:
                for f in feeds:
                    if send_every and f.due + send_every > now:
                        continue  # not a burst's worth due yet
                    while f.due <= now:
                        if max_busy:
                            f.held += 1
                            f.held_since = f.due if f.held_since is None else f.held_since
                        else:
                            waiting.append(f)
                        f.due += interval
                # Due requests go out oldest first while the caps allow.
                kept: collections.deque[Feed] = collections.deque()
                while waiting:
                    f = waiting.popleft()
                    if (max_in_flight and len(f.outstanding) >= max_in_flight) or \
                            (max_total and sent - replies >= max_total):
                        kept.append(f)
                        continue
                    f.send(subscribe)
                    sent += 1
                waiting = kept
                if max_busy:
                    # Whole batches: a kernel's due requests go out together once it has
                    # answered everything, while at most `max_busy` kernels have work.
                    busy = sum(1 for f in feeds if f.outstanding)
                    for f in sorted((f for f in feeds if f.held_since is not None), key=lambda f: f.held_since):
                        if f.outstanding or busy >= max_busy:
                            continue
                        for _ in range(f.held):
                            f.send(subscribe)
                        sent += f.held
                        f.held, f.held_since = 0, None
                        busy += 1
            elif k_window is None:
                k_window = sum(cpu_seconds(p) for p in procs)
                if iopub_every:
                    for f in feeds:
                        poller.register(f.iopub, zmq.POLLIN)
            elif now > end + drain or not any(f.outstanding or f.waiting_idle for f in feeds):
                break
            next_due = min(f.due for f in feeds) + send_every if now < end else now + 0.1
            ready = [sock for sock, _ in poller.poll(max(0.0, next_due - time.monotonic()) * 1000)]
            if iopub_every and now < end and now >= next_iopub:
                ready += [f.iopub for f in feeds]
                next_iopub = now + iopub_every
            for sock in ready:
                f = owner[sock]
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    parent = _parent_id(frames)
                    if sock is f.shell:
                        if parent in f.outstanding:
                            latency.append(time.monotonic() - f.outstanding.pop(parent))
                            replies += 1
                            if time.monotonic() <= end:
                                in_window += 1
                    elif parent in f.waiting_idle and _is_idle(frames):
                        f.waiting_idle.discard(parent)
        k_end, c_end = sum(cpu_seconds(p) for p in procs), cpu_seconds(me)
        assert k_window is not None
        return {
            "scenario": "kernel-capacity", "server": "none (pyzmq client)", "kernels": kernels, "rate": rate,
            "window_s": window, "sent": sent, "replies": replies, "replies_in_window": in_window,
            "replies_per_s": round(in_window / window, 2),
            # From the actual send, as the harness measures its reply latency.
            "reply_latency_ms": percentiles(latency),
            "unanswered": sum(len(f.outstanding) for f in feeds),
            "iopub_idle_missing": sum(len(f.waiting_idle) for f in feeds),
            "kernels_cpu_s_window": round(k_window - k0, 3),
            "kernels_cpu_ms_per_reply_window": round((k_window - k0) / in_window * 1000, 3) if in_window else None,
            "kernels_cpu_s_total": round(k_end - k0, 3), "client_cpu_s": round(c_end - c0, 3),
            "iopub_every_s": iopub_every, "send_every_s": send_every, "iopub_subscribed": subscribe,
            "max_in_flight": max_in_flight, "max_total_in_flight": max_total,
            "max_busy_kernels": max_busy,
            "held_unsent": len(waiting) + sum(f.held for f in feeds),
        }
    finally:
        ctx.destroy(linger=0)
        stop_kernels(managers)


def markdown(run: dict[str, Any]) -> str:
    lines = [f"Run {run['started']} ({run['duration_s']} s), command: `{run['command']}`", "",
             "| kernels × rate | requests sent | iopub read | replies/s in window | reply p50 / p99 ms "
             "| kernel CPU ms per reply (window) | unanswered / idles missing after drain |",
             "|---|---|---|---|---|---|---|"]
    for r in run["records"]:
        every = f"every {r['iopub_every_s']:g} s" if r.get("iopub_every_s") else "as it arrives"
        if r.get("iopub_subscribed") is False:
            every = "not subscribed (discarded by the kernel)"
        sends = f"in bursts every {r['send_every_s']:g} s" if r.get("send_every_s") else "each when due"
        for key, text in (("max_in_flight", "at most {} unanswered per kernel"),
                          ("max_total_in_flight", "at most {} unanswered in all"),
                          ("max_busy_kernels", "one batch per kernel, at most {} kernels busy")):
            if r.get(key):
                sends = text.format(r[key])
        lat = r.get("reply_latency_ms") or {}
        lines.append(f"| {r['kernels']}×{r['rate']:g} | {sends} | {every} | {r['replies_per_s']} "
                     f"| {lat.get('p50')} / {lat.get('p99')} | {r['kernels_cpu_ms_per_reply_window']} | {r['unanswered']} / {r['iopub_idle_missing']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.kernel_capacity", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default="16x100,64x10", help="KERNELSxRATE list (default 16x100,64x10)")
    p.add_argument("--window", type=float, default=30.0, help="seconds of load per configuration (default 30)")
    p.add_argument("--drain", type=float, default=None, help="max seconds to wait for late replies (default window/2)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="output directory")
    p.add_argument("--tag", default="kernel-capacity", help="name for this run's files")
    p.add_argument("--send-every", type=float, default=0.0,
                   help="send each kernel's due requests in bursts this many seconds apart (default 0: each when due)")
    p.add_argument("--iopub-every", type=float, default=0.0,
                   help="read iopub only every this many seconds during the window (default 0: as it arrives)")
    p.add_argument("--max-in-flight", type=int, default=0,
                   help="hold a kernel's requests while it has this many unanswered (default 0: never hold)")
    p.add_argument("--max-total-in-flight", type=int, default=0,
                   help="hold requests while this many are unanswered across all kernels (default 0: never hold)")
    p.add_argument("--max-busy-kernels", type=int, default=0,
                   help="send a kernel its due requests in one batch once it has answered all, "
                        "with at most this many kernels busy (default 0: off)")
    p.add_argument("--no-iopub", action="store_true",
                   help="subscribe to no iopub message, so the kernels discard their outputs (idles not counted)")
    args = p.parse_args(argv)
    try:
        configs = parse_configs(args.configs)
    except ValueError as exc:
        p.error(str(exc))
    if args.iopub_every < 0 or args.send_every < 0:
        p.error("--iopub-every and --send-every must be >= 0")
    if not configs or any(rate <= 0 for _, rate in configs):
        p.error(f"every config needs a rate above 0 (got {args.configs!r})")
    drain = args.drain if args.drain is not None else max(5.0, args.window / 2)
    raise_priority()
    env = BenchEnv()
    t0 = time.time()
    records = []
    try:
        for kernels, rate in configs:
            print(f"[capacity] {kernels}x{rate:g} …", flush=True)
            rec = run_config(kernels, rate, args.window, drain, env, args.iopub_every, args.send_every,
                             subscribe=not args.no_iopub, max_in_flight=args.max_in_flight,
                             max_total=args.max_total_in_flight, max_busy=args.max_busy_kernels)
            print(f"[capacity] {kernels}x{rate:g}: {rec['replies_per_s']} replies/s, "
                  f"reply p50/p99 {rec['reply_latency_ms']['p50']}/{rec['reply_latency_ms']['p99']} ms, "
                  f"{rec['kernels_cpu_ms_per_reply_window']} ms kernel CPU per reply", flush=True)
            records.append(rec)
    finally:
        shutil.rmtree(env.base, ignore_errors=True)
    run = {"command": "python -m benchmarks.kernel_capacity " + " ".join(argv if argv is not None else sys.argv[1:]),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "duration_s": round(time.time() - t0, 1),
           "machine": machine(), "versions": versions([]), "records": records}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.tag}.json").write_text(json.dumps(run, indent=1))
    (args.out / f"{args.tag}.md").write_text(markdown(run))
    print(f"[capacity] wrote {args.out / (args.tag + '.json')}")


if __name__ == "__main__":
    main()
