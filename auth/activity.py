"""Activity reporting to JupyterHub, so the hub's idle culler sees real use.

Every interval the reporter POSTs the server's last activity to
`$JUPYTERHUB_ACTIVITY_URL` (the hub's `/users/{name}/activity`), in the body
shape the hub expects: `{"last_activity": T, "servers": {name: {"last_activity": T}}}`.
Activity is the latest of API use and kernel activity; a kernel that is busy
right now counts as activity at this instant (configurable), so a long
computation is not culled as idle.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable

import orjson
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Float, Int
from traitlets.config import Configurable

log = logging.getLogger("zasperhub")


def _iso(dt: datetime.datetime) -> str:
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt.isoformat(timespec="microseconds") + "Z"


class HubActivityReporter(Configurable):
    """Periodically tells the hub when this server was last used."""

    interval = Float(300.0, config=True, help="Seconds between reports (default: $JUPYTERHUB_ACTIVITY_INTERVAL or 300).")
    busy_kernels_are_active = Bool(True, config=True, help="A kernel that is busy counts as activity now.")
    retries = Int(3, config=True, help="Attempts per report before waiting for the next interval.")
    request_timeout = Float(20.0, config=True, help="Timeout (seconds) of one report request.")

    def __init__(
        self,
        url: str,
        api_token: str,
        server_name: str,
        last_activity: Callable[[], datetime.datetime | None],
        any_kernel_busy: Callable[[], bool],
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.api_token = api_token
        self.server_name = server_name
        self._last_activity = last_activity
        self._any_kernel_busy = any_kernel_busy
        self._task: asyncio.Task[None] | None = None
        self._last_reported: datetime.datetime | None = None

    def current_activity(self) -> datetime.datetime | None:
        """The timestamp to report now."""
        if self.busy_kernels_are_active and self._any_kernel_busy():
            return datetime.datetime.now(datetime.timezone.utc)
        return self._last_activity()

    async def report_once(self) -> bool:
        """Send one report (with a few retries); True when the hub accepted it."""
        activity = self.current_activity()
        if activity is None:
            return True
        if self._last_reported is not None and activity <= self._last_reported:
            return True  # nothing new since the last report
        stamp = _iso(activity)
        body = orjson.dumps({"last_activity": stamp, "servers": {self.server_name: {"last_activity": stamp}}})
        request = HTTPRequest(
            self.url,
            method="POST",
            body=body,
            headers={"Authorization": f"token {self.api_token}", "Content-Type": "application/json"},
            request_timeout=self.request_timeout,
        )
        client = AsyncHTTPClient()
        delay = 1.0
        for attempt in range(1, self.retries + 1):
            try:
                await client.fetch(request)
            except (HTTPClientError, OSError) as e:
                log.warning("Activity report to the hub failed (attempt %d/%d): %s", attempt, self.retries, e)
                if attempt < self.retries:
                    await asyncio.sleep(delay)
                    delay *= 2
                continue
            self._last_reported = activity
            log.debug("Reported activity %s to the hub", stamp)
            return True
        return False

    async def _run(self) -> None:
        while True:
            try:
                await self.report_once()
            except Exception:
                log.exception("Unexpected error while reporting activity to the hub")
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Begin reporting in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hub-activity")

    async def stop(self) -> None:
        """Stop reporting."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
