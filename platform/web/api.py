"""Server-level endpoints: `/api`, `/api/status`, `/api/me`, `/api/shutdown`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from tornado import web

from zasperhub.platform.version import JUPYTER_SERVER_API_VERSION
from zasperhub.platform.web.base import APIHandler
from zasperhub.platform.web.util import isoformat_z

if TYPE_CHECKING:
    from zasperhub.platform.app import ZasperApp


def version_model(app: ZasperApp) -> dict[str, Any]:
    """The body of `GET /api`."""
    return {"version": JUPYTER_SERVER_API_VERSION}


def status_model(app: ZasperApp) -> dict[str, Any]:
    """The body of `GET /api/status`."""
    kernels, connections = app.kernel_registry.counts()
    return {
        "started": isoformat_z(app.started),
        "last_activity": isoformat_z(app.last_activity()),
        "kernels": kernels,
        "connections": connections,
    }


class VersionHandler(APIHandler):
    """`GET /api`: the version, unauthenticated (JupyterHub's readiness probe)."""

    auth_required = False
    poll_model = staticmethod(version_model)

    def get(self) -> None:
        self.finish_json(version_model(self.zasper))


class StatusHandler(APIHandler):
    """`GET /api/status`: start time, last activity, kernel and connection counts."""

    auth_required = True
    poll_model = staticmethod(status_model)

    def get(self) -> None:
        self.finish_json(status_model(self.zasper))


class MeHandler(APIHandler):
    """`GET /api/me`: who the caller is and what they may do."""

    auth_required = True

    def get(self) -> None:
        user = self.current_user
        assert user is not None
        permissions: dict[str, list[str]] = {}
        raw = self.get_query_argument("permissions", None)
        if raw:
            try:
                import orjson

                asked = orjson.loads(raw)
            except ValueError:
                raise web.HTTPError(400, "permissions must be a JSON object") from None
            if not isinstance(asked, dict):
                raise web.HTTPError(400, "permissions must be a JSON object")
            # A single-user server's owner may do everything it offers.
            permissions = {str(k): [str(a) for a in v] for k, v in asked.items() if isinstance(v, list)}
        self.finish_json({"identity": user.model(), "permissions": permissions})


class ShutdownHandler(APIHandler):
    """`POST /api/shutdown`: stop kernels and exit."""

    auth_required = True

    def post(self) -> None:
        self.finish_json({})
        asyncio.get_running_loop().call_soon(self.zasper.request_stop)


handlers = [
    (r"/api/?", VersionHandler),
    (r"/api/status", StatusHandler),
    (r"/api/me", MeHandler),
    (r"/api/shutdown", ShutdownHandler),
]
