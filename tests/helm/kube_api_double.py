"""A minimal Kubernetes API double: just enough for Helm's `lookup` of Secrets.

Serves discovery (`/version`, `/api`, `/apis`, `/api/v1`) and
`GET /api/v1/namespaces/{ns}/secrets/{name}` from an in-memory dict, over
plain HTTP on 127.0.0.1 in a background thread.  Unknown objects get the
API's 404 Status.  Requests are recorded for assertions.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web


class KubeAPIDouble:
    """Secrets keyed by (namespace, name)."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kubeconfig(self, namespace: str) -> str:
        return json.dumps({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "double", "cluster": {"server": self.url}}],
            "users": [{"name": "u", "user": {"token": "double"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "u", "namespace": namespace}}],
            "current-context": "double",
        })

    def start(self) -> KubeAPIDouble:
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()
        double = self

        class Handler(tornado.web.RequestHandler):
            def get(self, path: str) -> None:
                double.requests.append(self.request.path)
                self.set_header("Content-Type", "application/json")
                body = double.answer("/" + path)
                if body is None:
                    self.set_status(404)
                    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": f"{path} not found"}
                self.write(json.dumps(body))

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/(.*)", Handler)]))
            server.add_sockets(sockets)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()
            server.stop()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="kube-api-double", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("kube API double did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def answer(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret",
                 "verbs": ["get", "list", "create", "update", "delete"]},
            ]}
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            return self.secrets.get((parts[3], parts[5]))
        return None
