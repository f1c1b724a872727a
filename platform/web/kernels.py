"""Kernel REST endpoints: `/api/kernels`, `/api/kernels/{id}`, `…/interrupt`, `…/restart`.

Status codes follow Jupyter Server 2.x: 201 + Location for a new kernel, 204
for delete and interrupt, 200 with the model for restart, 404 for an unknown
kernel id or kernelspec.  While the server shuts down (its kernels are being
removed) kernel requests get 503 instead: the kernel is not unknown, the
server is stopping.
"""

from __future__ import annotations

from typing import Any

from tornado import web
from zasperhub.platform.kernels.registry import KernelStartError, ServerClosingError
from zasperhub.platform.web.base import APIHandler
from zasperhub.platform.web.util import url_path_join

KERNEL_ID = r"(?P<kernel_id>[\w-]+)"


class KernelAPIHandler(APIHandler):
    """Shared helpers: the registry, unknown ids as 404."""

    auth_required = True

    @property
    def registry(self) -> Any:
        return self.zasper.kernel_registry

    def check_not_closing(self) -> None:
        """503 while the server shuts down."""
        if self.registry.closing:
            raise web.HTTPError(503, "The server is shutting down")

    def kernel_or_404(self, kernel_id: str) -> Any:
        self.check_not_closing()
        try:
            return self.registry.get(kernel_id)
        except KeyError:
            raise web.HTTPError(404, f"Kernel does not exist: {kernel_id}") from None


class MainKernelHandler(KernelAPIHandler):
    """`GET /api/kernels` (list) and `POST /api/kernels` (start)."""

    def get(self) -> None:
        self.finish_json(self.registry.list_models())

    async def post(self) -> None:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "Request body must be a JSON object")
        name = body.get("name") or None
        path = body.get("path")
        if name is not None and not isinstance(name, str):
            raise web.HTTPError(400, "name must be a string")
        if path is not None and not isinstance(path, str):
            raise web.HTTPError(400, "path must be a string")
        # `env` (sent by Jupyter Server's GatewayClient) is accepted; only
        # JPY_/KERNEL_ variables are passed on, as gateways do.
        env: dict[str, str] = {}
        raw_env = body.get("env")
        if isinstance(raw_env, dict):
            env = {str(k): str(v) for k, v in raw_env.items() if str(k).startswith(("KERNEL_", "JPY_"))}
        cwd = self.zasper.session_manager.kernel_cwd(path or "") if path is not None else None
        self.check_not_closing()
        try:
            kernel_id = await self.registry.start_kernel(name, cwd=cwd, env=env)
        except ServerClosingError as e:
            raise web.HTTPError(503, str(e)) from None
        except KeyError as e:
            raise web.HTTPError(404, str(e.args[0]) if e.args else "No such kernel spec") from None
        except KernelStartError as e:
            raise web.HTTPError(500, str(e)) from None
        model = self.registry.model(kernel_id)
        self.set_header("Location", url_path_join(self.base_url, "api", "kernels", kernel_id))
        self.finish_json(model, status=201)


class KernelHandler(KernelAPIHandler):
    """`GET`/`DELETE /api/kernels/{id}`."""

    def get(self, kernel_id: str) -> None:
        self.finish_json(self.kernel_or_404(kernel_id).model())

    async def delete(self, kernel_id: str) -> None:
        self.kernel_or_404(kernel_id)
        try:
            await self.registry.shutdown_kernel(kernel_id)
        except KeyError:
            self.check_not_closing()  # removed by the server's shutdown meanwhile
            # else shut down concurrently: the outcome the client asked for
        self.set_status(204)
        self.finish()


class KernelActionHandler(KernelAPIHandler):
    """`POST /api/kernels/{id}/interrupt` (204) and `…/restart` (200 + model)."""

    async def post(self, kernel_id: str, action: str) -> None:
        kernel = self.kernel_or_404(kernel_id)
        if action == "interrupt":
            await kernel.interrupt()
            self.set_status(204)
            self.finish()
            return
        try:
            await kernel.restart()
        except Exception as e:  # noqa: BLE001 - any restart failure is this request's 500
            self.log_exception(type(e), e, e.__traceback__)
            raise web.HTTPError(500, f"Error restarting kernel: {e}") from None
        self.finish_json(kernel.model())


handlers = [
    (r"/api/kernels/?", MainKernelHandler),
    (rf"/api/kernels/{KERNEL_ID}/?", KernelHandler),
    (rf"/api/kernels/{KERNEL_ID}/(?P<action>interrupt|restart)/?", KernelActionHandler),
]
