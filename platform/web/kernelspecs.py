"""Kernelspec endpoints: `/api/kernelspecs`, `/api/kernelspecs/{name}`, `/kernelspecs/{name}/{resource}`.

Resources (logos, kernel.js) are served only from inside the kernelspec's
own directory: the resolved path must stay below the resolved directory, so
`..`, absolute paths and symlinks pointing outside all answer 404.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
from typing import Any

from tornado import web
from zasperhub.platform.web.base import APIHandler, BaseHandler
from zasperhub.platform.web.util import url_path_join

_CHUNK = 256 * 1024


def _resources(base_url: str, name: str, resource_dir: str) -> dict[str, str]:
    """URLs of the resource files clients look for (kernel.js/css, logos)."""
    found: dict[str, str] = {}
    try:
        files = os.listdir(resource_dir)
    except OSError:
        return found
    for fname in files:
        stem, _ = os.path.splitext(fname)
        if fname in ("kernel.js", "kernel.css"):
            found[fname] = url_path_join(base_url, "kernelspecs", name, fname)
        elif stem.startswith("logo-"):
            found[stem] = url_path_join(base_url, "kernelspecs", name, fname)
    return found


def spec_models(registry: Any, base_url: str) -> dict[str, Any]:
    """`{"default", "kernelspecs": {name: {"name", "spec", "resources"}}}` (blocking: run in a thread)."""
    ksm = registry.kernel_spec_manager
    specs: dict[str, Any] = {}
    for name, info in ksm.get_all_specs().items():
        specs[name] = {
            "name": name,
            "spec": info["spec"],
            "resources": _resources(base_url, name, info["resource_dir"]),
        }
    default = registry.default_kernel_name
    if default not in specs and specs:
        default = min(specs)
    return {"default": default, "kernelspecs": specs}


def spec_model(registry: Any, base_url: str, name: str) -> dict[str, Any]:
    """One kernelspec's model; `KeyError` when there is no such kernelspec."""
    # Imported here, in the handler's worker thread: jupyter_client is kept
    # off the server's start-up path.
    from jupyter_client.kernelspec import NoSuchKernel

    ksm = registry.kernel_spec_manager
    try:
        spec = ksm.get_kernel_spec(name)
    except NoSuchKernel:
        raise KeyError(name) from None
    return {"name": name, "spec": spec.to_dict(), "resources": _resources(base_url, name, spec.resource_dir)}


def _resource_dir(registry: Any, name: str) -> str:
    """A kernelspec's directory; `KeyError` when there is none (blocking: run in a thread)."""
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        return registry.kernel_spec_manager.get_kernel_spec(name).resource_dir
    except NoSuchKernel:
        raise KeyError(name) from None


class KernelSpecsHandler(APIHandler):
    """`GET /api/kernelspecs`."""

    auth_required = True

    async def get(self) -> None:
        model = await asyncio.to_thread(spec_models, self.zasper.kernel_registry, self.base_url)
        self.finish_json(model)


class KernelSpecHandler(APIHandler):
    """`GET /api/kernelspecs/{name}`."""

    auth_required = True

    async def get(self, name: str) -> None:
        try:
            model = await asyncio.to_thread(spec_model, self.zasper.kernel_registry, self.base_url, name)
        except KeyError:
            raise web.HTTPError(404, f"Kernel spec {name} not found") from None
        self.finish_json(model)


def resolve_resource(resource_dir: str, resource: str) -> str | None:
    """The file for `resource` inside `resource_dir`, or None if it would escape it."""
    if not resource or "\x00" in resource or os.path.isabs(resource) or resource.startswith(("/", "\\")):
        return None
    base = os.path.realpath(resource_dir)
    target = os.path.realpath(os.path.join(base, resource))
    if os.path.commonpath([base, target]) != base or target == base:
        return None
    return target if os.path.isfile(target) else None


class KernelSpecResourceHandler(BaseHandler):
    """`GET /kernelspecs/{name}/{resource}`: a file from the kernelspec's directory."""

    auth_required = True

    async def get(self, name: str, resource: str) -> None:
        try:
            resource_dir = await asyncio.to_thread(_resource_dir, self.zasper.kernel_registry, name)
        except KeyError:
            raise web.HTTPError(404, f"Kernel spec {name} not found") from None
        path = resolve_resource(resource_dir, resource)
        if path is None:
            raise web.HTTPError(404, f"No resource {resource!r} in kernel spec {name}")
        mime, _ = mimetypes.guess_type(path)
        self.set_header("Content-Type", mime or "application/octet-stream")
        self.set_header("Cache-Control", "max-age=3600")
        with await asyncio.to_thread(open, path, "rb") as f:
            while True:
                chunk = await asyncio.to_thread(f.read, _CHUNK)
                if not chunk:
                    break
                self.write(chunk)
                await self.flush()
        self.finish()


handlers = [
    (r"/api/kernelspecs/?", KernelSpecsHandler),
    (r"/api/kernelspecs/(?P<name>[^/]+)/?", KernelSpecHandler),
    (r"/kernelspecs/(?P<name>[^/]+)/(?P<resource>.+)", KernelSpecResourceHandler),
]
