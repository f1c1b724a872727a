"""Asyncio load client over the public API: sessions and kernel WebSockets.

``ServerAPI`` creates and deletes sessions over REST; ``KernelClient`` holds
one kernel WebSocket, sends requests and matches ``*_reply`` and iopub
``status: idle`` to each request by ``parent_header.msg_id``.  Workloads
(open-loop, closed-loop, large output …) live in ``workloads.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from benchmarks.stats import LoadStats
from benchmarks.wire import Incoming, make_codec

#: A request is complete once both its reply and its iopub idle arrived.
DONE = 3
GOT_REPLY = 1
GOT_IDLE = 2


class Pending:
    """State of one in-flight request."""

    __slots__ = ("counted", "flags", "future", "on_reply", "reply_only", "sent")

    def __init__(self, sent: float, counted: bool, future: asyncio.Future | None, on_reply: Callable[[], None] | None,
                 reply_only: bool = False) -> None:
        self.sent = sent
        #: resolve ``future`` on the reply alone (liveness checks), not reply + idle.
        self.reply_only = reply_only
        self.flags = 0
        self.counted = counted
        self.future = future
        self.on_reply = on_reply


class ServerAPI:
    """REST calls the harness needs: sessions, kernels, status."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.AsyncClient(base_url=self.base_url, headers={"Authorization": f"token {token}"}, timeout=120)

    @property
    def ws_base(self) -> str:
        return "ws" + self.base_url[4:]

    async def create_session(self, path: str, kernel_name: str) -> dict[str, Any]:
        body = {"path": path, "name": path, "type": "notebook", "kernel": {"name": kernel_name}}
        resp = await self.http.post("/api/sessions", json=body)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/sessions -> {resp.status_code}: {resp.text[:300]}")
        return resp.json()

    async def delete_session(self, session_id: str) -> int:
        return (await self.http.delete(f"/api/sessions/{session_id}")).status_code

    async def kernel_state(self, kernel_id: str) -> str:
        resp = await self.http.get(f"/api/kernels/{kernel_id}")
        if resp.status_code != 200:
            return f"http-{resp.status_code}"
        return str(resp.json().get("execution_state"))

    async def close(self) -> None:
        await self.http.aclose()


class KernelClient:
    """One WebSocket to one kernel, with request/response matching."""

    def __init__(self, api: ServerAPI, kernel_id: str, wire: str, stats: LoadStats, *, max_queue: int = 64) -> None:
        self.api = api
        self.kernel_id = kernel_id
        self.codec = make_codec(wire)
        self.stats = stats
        self.max_queue = max_queue
        self.session = uuid.uuid4().hex
        self.pending: dict[str, Pending] = {}
        #: msg_ids whose iopub traffic this client also wants to see (watchers).
        self.watch: dict[str, Callable[[Incoming, float], None]] = {}
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task | None = None
        self.closing = False
        self.window_end = float("inf")
        self.stream_chars = 0
        self.close_info: str | None = None
        self._seq = 0
        #: Generous: a server may hold the upgrade until a starting kernel
        #: answers, and 64 kernels starting on 2 cores take a while.
        self.open_timeout = 180.0

    async def connect(self, read: bool = True) -> None:
        url = f"{self.api.ws_base}/api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        self.ws = await websockets.connect(
            url, subprotocols=[Subprotocol(p) for p in self.codec.subprotocols] or None, compression=None, max_size=None,
            max_queue=self.max_queue, ping_interval=None, open_timeout=self.open_timeout,
            additional_headers={"Authorization": f"token {self.api.token}"},
        )
        if self.codec.subprotocols and self.ws.subprotocol not in self.codec.subprotocols:
            await self.ws.close()
            raise RuntimeError(f"server did not select {self.codec.subprotocols[0]} (got {self.ws.subprotocol!r})")
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        self.reader = asyncio.create_task(self._read())

    async def request(self, msg_type: str, content: dict[str, Any], *, channel: str = "shell", counted: bool = False,
                      wait: bool = False, on_reply: Callable[[], None] | None = None,
                      reply_only: bool = False) -> tuple[str, asyncio.Future | None]:
        """Queue one request on the WebSocket; returns its msg_id (and a future if ``wait``)."""
        self._seq += 1
        msg_id = f"{self.session}-{self._seq}"
        header = {"msg_id": msg_id, "msg_type": msg_type, "username": "bench", "session": self.session,
                  "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"}
        future = asyncio.get_running_loop().create_future() if wait else None
        self.pending[msg_id] = Pending(time.perf_counter(), counted, future, on_reply, reply_only)
        frame = self.codec.encode(channel, header, content)
        assert self.ws is not None
        # send() only waits when the socket's write buffer is full; that
        # back-pressure shows up in the workload's send lag.
        await self.ws.send(frame)
        if counted:
            self.stats.sent += 1
        return msg_id, future

    async def call(self, msg_type: str, content: dict[str, Any], *, channel: str = "shell", timeout: float = 30,
                   reply_only: bool = False) -> float:
        """Send a request and wait for its reply and idle (or the reply only); returns seconds taken."""
        start = time.perf_counter()
        _, future = await self.request(msg_type, content, channel=channel, wait=True, reply_only=reply_only)
        assert future is not None
        await asyncio.wait_for(future, timeout)
        return time.perf_counter() - start

    async def _read(self) -> None:
        assert self.ws is not None
        stats = self.stats
        try:
            async for frame in self.ws:
                now = time.perf_counter()
                stats.frames += 1
                stats.bytes_in += len(frame)
                try:
                    msg = self.codec.decode(frame)
                except (ValueError, KeyError, TypeError) as exc:
                    stats.decode_errors += 1
                    stats.errors.append(f"decode: {exc}")
                    continue
                stats.by_type[msg.channel + "/" + msg.msg_type] += 1
                if msg.execution_state == "dead":
                    stats.dead_kernels.add(self.kernel_id)
                self.stream_chars += msg.stream_chars
                pid = msg.parent_msg_id
                if pid is None:
                    continue
                watcher = self.watch.get(pid)
                if watcher is not None:
                    watcher(msg, now)
                rec = self.pending.get(pid)
                if rec is None:
                    continue
                if msg.msg_type.endswith("_reply") and not rec.flags & GOT_REPLY:
                    rec.flags |= GOT_REPLY
                    if rec.counted:
                        stats.replies += 1
                        stats.reply_latency.append(now - rec.sent)
                        if now <= self.window_end:
                            stats.replies_in_window += 1
                    if rec.on_reply is not None:
                        rec.on_reply()
                    if rec.reply_only and rec.future is not None and not rec.future.done():
                        rec.future.set_result(now)
                elif msg.execution_state == "idle" and not rec.flags & GOT_IDLE:
                    rec.flags |= GOT_IDLE
                    if rec.counted:
                        stats.idles += 1
                        stats.idle_latency.append(now - rec.sent)
                if rec.flags == DONE:
                    del self.pending[pid]
                    if rec.future is not None and not rec.future.done():
                        rec.future.set_result(now)
        except ConnectionClosed as exc:
            self.close_info = f"{exc.rcvd.code if exc.rcvd else None} {exc.rcvd.reason if exc.rcvd else ''}".strip()
            if not self.closing:
                stats.dropped_ws.append(f"{self.kernel_id[:8]}: {self.close_info}")
        finally:
            for rec in self.pending.values():
                if rec.future is not None and not rec.future.done():
                    rec.future.set_exception(ConnectionError("websocket closed"))

    def unanswered(self) -> tuple[int, int]:
        """(requests without a reply, replied requests whose idle never came)."""
        no_reply = sum(1 for r in self.pending.values() if r.counted and not r.flags & GOT_REPLY)
        no_idle = sum(1 for r in self.pending.values() if r.counted and r.flags == GOT_REPLY)
        return no_reply, no_idle

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            try:
                await asyncio.wait_for(self.reader, 5)
            except (asyncio.TimeoutError, ConnectionError):
                self.reader.cancel()
