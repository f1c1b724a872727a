"""A lean path for the endpoints monitors poll: `GET /api/status` and `GET /api`.

Why: JupyterHub waits for a new server by polling `/api`, health checks and
dashboards poll `/api/status`, and the benchmark harness probes it twice a
second.  Through tornado's `RequestHandler` each such request costs about
1,000 Python calls (handler set-up, default headers, the async `prepare`,
authentication, the ETag, the output transforms, the access log), and on an
otherwise quiet server it runs on a cold cache: 0.9 ms of CPU per request
measured here, more than four kernel round trips.

So a request that is plainly the common case is answered by a small
`HTTPMessageDelegate` with the same body and the same headers as the
handler: GET, no query string, no body, no `Origin`, `Upgrade`, `Cookie` or
`If-None-Match`, an allowed `Host`, and, for `/api/status`, credentials the
identity provider can verify from the headers alone
(`IdentityProvider.header_user`).  Anything else (including every request
that would be refused) takes the handler path unchanged, which owns all
error answers, cookies, CORS and conditional requests.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import tornado
from tornado import httputil, web

from zasperhub.platform.web.base import API_HEADERS, BaseHandler, default_headers, host_allowed, is_poll, log_access

if TYPE_CHECKING:
    from zasperhub.platform.app import ZasperApp

#: Request headers that send a request down the full handler path (in
#: tornado's normalized spelling, which is how `HTTPHeaders` iterates).
FULL_PATH_HEADERS: frozenset[str] = frozenset(
    {"Origin", "Upgrade", "Cookie", "If-None-Match", "Content-Length", "Transfer-Encoding"}
)

Body = Callable[["ZasperApp"], Any]


class _HttpDate:
    """The `Date` header value, formatted once per second rather than per response."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = httputil.format_timestamp(second)
        return self._value


class ProbeDelegate(httputil.HTTPMessageDelegate):
    """Answers one eligible polling request: 200 with the endpoint's JSON body."""

    def __init__(self, application: Application, request: httputil.HTTPServerRequest, body: Body) -> None:
        self.application = application
        self.request = request
        self.body = body

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> None:
        return None

    def data_received(self, chunk: bytes) -> None:
        return None  # eligible requests carry no body

    def finish(self) -> None:
        app = self.application
        payload = orjson.dumps(self.body(app.settings["zasper"]))
        headers = httputil.HTTPHeaders()
        for name, value in app.probe_headers:
            headers.add(name, value)
        headers["Date"] = app.http_date.now()
        # The handler path's ETag (tornado's: SHA-1 of the body), so clients see no difference.
        headers["Etag"] = '"%s"' % hashlib.sha1(payload).hexdigest()
        headers["Content-Length"] = str(len(payload))
        connection = self.request.connection
        assert connection is not None
        connection.write_headers(httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), headers, payload)
        connection.finish()
        log_access(200, self.request, poll=True)

    def on_connection_close(self) -> None:
        return None


class Application(web.Application):
    """tornado's Application; routed requests for a polling endpoint may take the lean path."""

    def __init__(self, handlers: list[Any], **settings: Any) -> None:
        super().__init__(handlers, **settings)
        # Static response headers, in the order the handler path sends them
        # (tornado's Server first, then ours; Vary from its gzip transform).
        headers = [("Server", "TornadoServer/%s" % tornado.version)]
        headers.extend(default_headers(self.settings))
        headers.extend(API_HEADERS)
        if self.settings.get("compress_response") or self.settings.get("gzip"):
            headers.append(("Vary", "Accept-Encoding"))
        self.probe_headers: tuple[tuple[str, str], ...] = tuple(headers)
        self.http_date = _HttpDate()

    def find_handler(self, request: httputil.HTTPServerRequest, **kwargs: Any) -> httputil.HTTPMessageDelegate:
        delegate = super().find_handler(request, **kwargs)
        # The route table decides which handler serves the path; a handler
        # that declares a `poll_model` is a polling endpoint.
        handler = getattr(delegate, "handler_class", None)
        if handler is not None and is_poll(handler) and self.plain_poll(request, handler):
            return ProbeDelegate(self, request, handler.poll_model)
        return delegate

    def plain_poll(self, request: httputil.HTTPServerRequest, handler: type[BaseHandler]) -> bool:
        """Whether a request for polling endpoint `handler` may take the lean path."""
        if request.method != "GET" or request.query:
            return False
        headers = request.headers
        if not FULL_PATH_HEADERS.isdisjoint(headers) or not host_allowed(self.settings, request.host):
            return False
        if handler.auth_required and self.settings["zasper"].identity_provider.header_user(headers) is None:
            return False
        return True
