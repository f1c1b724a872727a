"""Session endpoints: `/api/sessions` and `/api/sessions/{id}` (GET/POST/PATCH/DELETE).

POST answers 201 with a Location header, returning the existing session for
a path that already has one; PATCH renames the path or switches the kernel
(a kernel `id` attaches that kernel, a `name` starts a new one) and answers
200; DELETE shuts the session's kernel down and answers 204.  While the
server shuts down, requests that would find a session or kernel gone (or
start a kernel) get 503, not 404.
"""

from __future__ import annotations

from typing import Any

from tornado import web
from zasperhub.platform.kernels.registry import KernelStartError, ServerClosingError
from zasperhub.platform.web.base import APIHandler
from zasperhub.platform.web.util import url_path_join


class SessionAPIHandler(APIHandler):
    auth_required = True

    @property
    def sessions(self) -> Any:
        return self.zasper.session_manager

    def not_found(self, message: str) -> web.HTTPError:
        """404, or 503 while the server shuts down (its kernels, and so sessions, are going away)."""
        if self.zasper.kernel_registry.closing:
            return web.HTTPError(503, "The server is shutting down")
        return web.HTTPError(404, message)

    def json_object(self) -> dict[str, Any]:
        body = self.get_json_body()
        if body is None:
            raise web.HTTPError(400, "No JSON data provided")
        if not isinstance(body, dict):
            raise web.HTTPError(400, "Request body must be a JSON object")
        return body


class SessionRootHandler(SessionAPIHandler):
    """`GET /api/sessions` (list) and `POST /api/sessions` (create or find)."""

    def get(self) -> None:
        self.finish_json(self.sessions.list_sessions())

    async def post(self) -> None:
        body = self.json_object()
        path = body.get("path")
        if not isinstance(path, str) or path is None:
            raise web.HTTPError(400, "Missing field in JSON data: path")
        mtype = body.get("type")
        if not isinstance(mtype, str):
            raise web.HTTPError(400, "Missing field in JSON data: type")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise web.HTTPError(400, "name must be a string")
        kernel = body.get("kernel") or {}
        if not isinstance(kernel, dict):
            raise web.HTTPError(400, "kernel must be an object")
        kernel_id = kernel.get("id") or None
        kernel_name = kernel.get("name") or None
        try:
            model, _ = await self.sessions.create_session(
                path=path, type=mtype, name=name, kernel_name=kernel_name, kernel_id=kernel_id
            )
        except ServerClosingError as e:
            raise web.HTTPError(503, str(e)) from None
        except KernelStartError as e:
            raise web.HTTPError(500, str(e)) from None
        except KeyError as e:
            if kernel_id:
                raise self.not_found(f"Kernel does not exist: {kernel_id}") from None
            # Jupyter Server answers 501 for an unavailable kernelspec.
            message = (
                f"The '{kernel_name}' kernel is not available. Please pick another suitable kernel instead, "
                "or install that kernel."
            )
            self.set_status(501)
            self.finish_json({"message": message, "short_message": f"{kernel_name} not found", "reason": str(e)}, status=501)
            return
        self.set_header("Location", url_path_join(self.base_url, "api", "sessions", model["id"]))
        self.finish_json(model, status=201)


class SessionHandler(SessionAPIHandler):
    """`GET`, `PATCH`, `DELETE /api/sessions/{id}`."""

    def get(self, session_id: str) -> None:
        try:
            self.finish_json(self.sessions.get_session(session_id))
        except KeyError:
            raise self.not_found(f"Session not found: {session_id}") from None

    async def patch(self, session_id: str) -> None:
        body = self.json_object()
        try:
            model = await self.sessions.update_session(session_id, body)
        except ServerClosingError as e:
            raise web.HTTPError(503, str(e)) from None
        except KernelStartError as e:
            raise web.HTTPError(500, str(e)) from None
        except KeyError:
            raise self.not_found(f"Session not found: {session_id}") from None
        self.finish_json(model)

    async def delete(self, session_id: str) -> None:
        try:
            await self.sessions.delete_session(session_id)
        except KeyError:
            raise self.not_found(f"Session not found: {session_id}") from None
        self.set_status(204)
        self.finish()


handlers = [
    (r"/api/sessions/?", SessionRootHandler),
    (r"/api/sessions/(?P<session_id>[\w-]+)/?", SessionHandler),
]
