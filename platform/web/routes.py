"""The route table: which handler modules the server mounts, in order.

Each module exposes `handlers`, a list of `(pattern, HandlerClass[, kwargs])`
with patterns relative to the base URL.  Order matters only for the UI's
catch-all, which comes last.
"""

from __future__ import annotations

import importlib
from typing import Any

HANDLER_MODULES: tuple[str, ...] = (
    "zasperhub.platform.web.api",
    "zasperhub.platform.web.kernelspecs",
    "zasperhub.platform.web.kernels",
    "zasperhub.platform.web.sessions",
    "zasperhub.platform.web.channels",
    "zasperhub.platform.web.contents",
    "zasperhub.platform.web.files",
    "zasperhub.platform.web.login",
    "zasperhub.platform.web.ui",
)


def collect_handlers(base_url: str) -> list[tuple[Any, ...]]:
    """All routes, prefixed with `base_url`."""
    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    routes: list[tuple[Any, ...]] = []
    for name in HANDLER_MODULES:
        module = importlib.import_module(name)
        for entry in module.handlers:
            pattern, rest = entry[0], entry[1:]
            routes.append((prefix + pattern, *rest))
    return routes
