"""The web UI: the app shell at the base URL and its SPA routes, and the
built assets under `static/ui/`.

The UI is built ahead of time into `platform/ui/dist/` (committed, so an
install needs no node).  Asset names carry content hashes, so they are
cached for a year; the shell itself is never cached and gets the page
configuration (base URL, auth mode, logout link, storage) injected.
Pre-compressed `.gz` copies are sent as-is to clients that accept gzip.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from pathlib import Path
from typing import Any, ClassVar

import orjson
from tornado import web

from zasperhub.platform.version import __version__
from zasperhub.platform.web.base import BaseHandler
from zasperhub.platform.web.util import url_path_join

#: Where `npm run build` writes the UI.
DIST_DIR = Path(__file__).resolve().parent.parent / "ui" / "dist"

#: esbuild's `[name]-[hash]` output names: safe to cache forever.
HASHED_NAME = re.compile(r"-[A-Z0-9]{8}\.[a-z0-9]+$")

#: Script only from our own origin: even if sanitizing ever let markup with
#: inline script or event handlers through, the browser would not run it.
SHELL_CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob: https: http:",
        "font-src 'self' data:",
        "connect-src 'self' ws: wss:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)

log = logging.getLogger(__name__)

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("font/woff2", ".woff2")


class AssetCache:
    """Files of dist/ read once and kept in memory (the whole UI is ~1 MB).

    Entries are keyed by path and checked against the file's mtime, so a
    rebuild during development is picked up without a restart.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, tuple[float, bytes]] = {}

    def resolve(self, name: str) -> Path | None:
        """The file for a request path inside root, or None (missing or escaping root)."""
        if not name or "\\" in name or name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")):
            return None
        path = (self.root / name).resolve()
        try:
            path.relative_to(self.root.resolve())
        except ValueError:
            return None
        return path if path.is_file() else None

    def read(self, path: Path) -> bytes:
        mtime = path.stat().st_mtime
        key = str(path)
        cached = self._files.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        data = path.read_bytes()
        self._files[key] = (mtime, data)
        return data


ASSETS = AssetCache(DIST_DIR)


def page_config(handler: BaseHandler) -> dict[str, Any]:
    """What the UI needs to know about this server (nothing secret)."""
    app = handler.zasper
    provider = app.identity_provider
    base = handler.base_url
    if getattr(app, "hub_mode", False):
        mode = "hub"
    elif getattr(app, "protected", False):
        mode = "password"
    else:
        mode = "token"
    anonymous = bool(getattr(provider, "anonymous_allowed", lambda: False)())
    logout = provider.logout_url()
    hub_control = ""
    hub_auth = getattr(provider, "hub_auth", None)
    if hub_auth is not None:
        hub_control = url_path_join(getattr(hub_auth, "hub_host", "") + getattr(hub_auth, "hub_prefix", "/hub/"), "home")
    storage = ""
    if app.contents_manager is not None and hasattr(app.contents_manager, "describe"):
        storage = app.contents_manager.describe()
    return {
        "baseUrl": base,
        "authMode": mode,
        "logoutUrl": url_path_join(base, logout) if logout and not anonymous else "",
        "hubControlUrl": hub_control,
        "storage": storage,
        "version": __version__,
    }


def render_shell(template: str, config: dict[str, Any], base_url: str) -> str:
    """Fill the built index.html with the base URL and the page config."""
    # "</" inside the JSON could close the <script> element early.
    config_json = orjson.dumps(config).decode().replace("</", "<\\/")
    return template.replace("%BASE_URL%", base_url).replace("%CONFIG%", config_json)


class AppShellHandler(BaseHandler):
    """The single-page app at the base URL and its client-side routes."""

    auth_required = True

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Security-Policy", SHELL_CSP)

    def get(self, *args: Any) -> None:
        index = DIST_DIR / "index.html"
        if not index.is_file():
            raise web.HTTPError(500, "The web UI is not built: run `npm ci && npm run build` in platform/ui")
        template = ASSETS.read(index).decode("utf-8")
        self._prewarm_kernel()
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        # The shell names the current asset hashes: always revalidate it.
        self.set_header("Cache-Control", "no-cache")
        self.finish(render_shell(template, page_config(self), self.base_url))


    def _prewarm_kernel(self) -> None:
        """Ask the kernel registry to have a kernel of the default kernelspec warm.

        A user who loads the app is about to open a notebook; starting the
        kernel now overlaps ipykernel's start-up (the bulk of "open to
        interactive") with loading the page.  `prewarm` is idempotent and
        returns at once; registries without it are simply not asked.
        """
        registry = getattr(self.zasper, "kernel_registry", None)
        prewarm = getattr(registry, "prewarm", None)
        if prewarm is None:
            return
        try:
            prewarm()
        except Exception:
            # A failed warm-up only costs the speed-up; the page must still load.
            log.warning("Kernel prewarm failed", exc_info=True)


class LabRedirectHandler(BaseHandler):
    """`/lab`, the default URL JupyterHub and users often ask for: send to the file browser."""

    auth_required = False

    def get(self, *args: Any) -> None:
        self.redirect(url_path_join(self.base_url, "tree"))


class UIStaticHandler(BaseHandler):
    """Built assets: immutable when hashed, pre-compressed when possible."""

    # Assets hold no data; the shell and the APIs are what need a login.
    auth_required = False
    redirect_to_login: ClassVar[bool] = False

    def get(self, name: str) -> None:
        self._serve(name, include_body=True)

    def head(self, name: str) -> None:
        self._serve(name, include_body=False)

    def _serve(self, name: str, include_body: bool) -> None:
        path = ASSETS.resolve(name)
        if path is None or path.suffix == ".gz":
            raise web.HTTPError(404, "No such asset")
        ctype, _ = mimetypes.guess_type(path.name)
        self.set_header("Content-Type", ctype or "application/octet-stream")
        if HASHED_NAME.search(path.name):
            self.set_header("Cache-Control", "public, max-age=31536000, immutable")
        else:
            self.set_header("Cache-Control", "no-cache")
        self.set_header("Vary", "Accept-Encoding")
        gz = path.with_name(path.name + ".gz")
        if "gzip" in self.request.headers.get("Accept-Encoding", "") and gz.is_file():
            # Setting Content-Encoding also stops tornado gzipping it again.
            self.set_header("Content-Encoding", "gzip")
            path = gz
        data = ASSETS.read(path)
        if include_body:
            self.finish(data)
        else:
            self.set_header("Content-Length", str(len(data)))
            self.finish()


handlers = [
    (r"/static/ui/(.+)", UIStaticHandler),
    (r"/lab(/.*)?", LabRedirectHandler),
    (r"/?", AppShellHandler),
    (r"/(tree|notebooks|edit|view)(/.*)?", AppShellHandler),
]
