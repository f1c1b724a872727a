"""Base request handlers: authentication, host/origin checks, JSON errors.

Every concrete handler sets `auth_required` (True or False) explicitly; a
test walks the route table and fails on any handler that leaves it unset.
Storage and kernel code raise the built-in `OSError` family and `KeyError`;
this module is the one place they become HTTP status codes.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

import orjson
from tornado import httputil, web

from zasperhub.auth import web as auth_web
from zasperhub.auth.base import User
from zasperhub.platform.web.util import url_path_join

if TYPE_CHECKING:
    from zasperhub.platform.app import ZasperApp

log = logging.getLogger("zasperhub")

#: Exceptions raised below the web layer and the status they mean.
ERROR_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, 404),
    (FileExistsError, 409),
    (IsADirectoryError, 400),
    (NotADirectoryError, 400),
    (PermissionError, 403),
    (TimeoutError, 503),
    (ConnectionError, 503),
    (ValueError, 400),
)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Statuses a provider may ask for when it refuses a request.
DENY_STATUSES = frozenset({401, 403, 429, 503})


def status_for_exception(exc: BaseException) -> int | None:
    """The HTTP status for a non-HTTP exception, or None for a real bug (500)."""
    if isinstance(exc, web.HTTPError):
        return exc.status_code
    for kind, status in ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return None


@functools.lru_cache(maxsize=256)
def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> str:
    """The hostname part of a Host header value (no port, IPv6 brackets kept off)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_poll(handler_class: type[web.RequestHandler]) -> bool:
    """Whether a handler serves an endpoint monitors poll (see `BaseHandler.poll_model`)."""
    return getattr(handler_class, "poll_model", None) is not None


def log_request(handler: web.RequestHandler) -> None:
    """tornado's `log_function`: the access log line for a handler's response."""
    log_access(handler.get_status(), handler.request, is_poll(type(handler)))


def log_access(status: int, request: httputil.HTTPServerRequest, poll: bool) -> None:
    """Access log without secrets: the query string (it may hold ?token=) is never logged."""
    if status >= 500:
        level = logging.ERROR
    elif status >= 400:
        level = logging.WARNING
    elif poll:
        level = logging.DEBUG
    else:
        level = logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.DEBUG
    if not log.isEnabledFor(level):
        return
    ms = 1000.0 * request.request_time()
    log.log(level, "%d %s %s (%s) %.1fms", status, request.method, request.path, request.remote_ip, ms)


def default_headers(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """The security (and hub) headers every response carries."""
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", settings.get("csp", "frame-ancestors 'self'")),
        ("Referrer-Policy", "same-origin"),
    ]
    headers.extend(settings.get("extra_headers", {}).items())
    return headers


#: What every API response adds to `default_headers`.
API_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "application/json; charset=UTF-8"),
    ("Cache-Control", "no-store"),
)


def host_allowed(settings: dict[str, Any], host: str | None) -> bool:
    """Whether a request's Host header may be served (the DNS rebinding guard)."""
    if settings.get("allow_remote_access"):
        return True
    name = split_host(host or "")
    return _is_loopback_host(name) or name in settings.get("local_hostnames", ())


class BaseHandler(web.RequestHandler):
    """Common behaviour for every page and API handler."""

    #: Must be set to True or False by every concrete handler.
    auth_required: ClassVar[bool | None] = None
    #: Set on the endpoints monitors poll (`/api`, `/api/status`): the source
    #: of the response body.  Their requests are not activity, are logged at
    #: debug level, and plain ones are answered by the lean path (probe.py).
    poll_model: ClassVar[Callable[[ZasperApp], Any] | None] = None

    current_user: User | None

    @property
    def zasper(self) -> ZasperApp:
        """The application object holding the server's components."""
        return self.settings["zasper"]

    @property
    def base_url(self) -> str:
        return self.settings.get("base_url", "/")

    # -- security headers -------------------------------------------------
    def set_default_headers(self) -> None:
        for name, value in default_headers(self.settings):
            self.set_header(name, value)

    # -- host / origin (DNS rebinding, CORS) ------------------------------
    def host_allowed(self) -> bool:
        """Refuse Host headers that could come from DNS rebinding."""
        return host_allowed(self.settings, self.request.host)

    def origin_allowed(self) -> bool:
        """Same-origin or explicitly allowed Origin (requests without Origin are not browsers' cross-site ones)."""
        origin = self.request.headers.get("Origin")
        if not origin:
            return True
        allow = self.settings.get("allow_origin", "")
        if allow == "*":
            return True
        if origin == allow:
            return True
        pattern = self.settings.get("allow_origin_pat")
        if pattern is not None and pattern.match(origin):
            return True
        parsed = urlparse(origin)
        return bool(parsed.netloc) and parsed.netloc.lower() == (self.request.host or "").lower()

    def check_origin(self, origin: str) -> bool:
        """WebSocket handlers' Origin check (tornado calls it with the Origin header)."""
        return self.origin_allowed()

    # -- authentication ---------------------------------------------------
    @property
    def is_websocket_request(self) -> bool:
        """True for a WebSocket upgrade request."""
        return self.request.headers.get("Upgrade", "").lower() == "websocket"

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.host_allowed():
            log.warning("Blocked request with Host header %r (DNS rebinding guard)", self.request.host)
            raise web.HTTPError(403, "Host not allowed", reason="Host not allowed")
        if self.is_websocket_request and not self.origin_allowed():
            # Browsers send cookies with cross-site WebSocket upgrades, and
            # there is no XSRF token on them: the Origin check is the guard.
            log.warning("Blocked WebSocket from Origin %r", self.request.headers.get("Origin"))
            raise web.HTTPError(403, "Origin not allowed", reason="Origin not allowed")
        if self.auth_required is None:
            raise web.HTTPError(500, f"{type(self).__name__} does not declare auth_required")
        provider = self.zasper.identity_provider
        result = await auth_web.authenticate(self, provider, self.zasper.session_max_age)
        self.current_user = result.user
        if self.auth_required and result.user is None:
            self.deny(result.status if result.status in DENY_STATUSES else 401, result.error or "Unauthorized")
            return
        if result.user is not None:
            self.zasper.note_activity(self)
            if result.user.via == "cookie":
                if self.request.method in UNSAFE_METHODS:
                    # Only browser sessions need XSRF: a token header cannot be
                    # forged cross-site.
                    self.check_xsrf_cookie()
                elif self.request.method == "GET" and not self.get_cookie("_xsrf"):
                    # Give the browser the token its scripts echo back in
                    # X-XSRFToken (JupyterLab's client does this).
                    self.xsrf_token  # noqa: B018 - the property sets the cookie
            if result.set_cookie and self._strip_token_from_url():
                return

    def _strip_token_from_url(self) -> bool:
        """After `?token=` started a session on a page, drop the token from the URL.

        Keeps credentials out of history, bookmarks and Referer headers.
        Returns True when a redirect was sent.
        """
        if self.request.method != "GET" or not self.redirect_to_login or self.is_websocket_request:
            return False
        self.redirect(self._url_without_token())
        return True

    def _url_without_token(self) -> str:
        """This request's path and query, minus any `token` parameter."""
        from urllib.parse import urlencode

        query = [(k, v.decode("utf-8", "replace")) for k, vs in self.request.query_arguments.items() if k != "token" for v in vs]
        return self.request.path + ("?" + urlencode(query) if query else "")

    def check_xsrf_cookie(self) -> None:
        """XSRF is checked in `prepare` for cookie-authenticated writes only."""
        if self.current_user is None or self.current_user.via != "cookie":
            return
        super().check_xsrf_cookie()

    #: Whether a browser asking for this handler's page without credentials
    #: is sent to the login page (pages) or answered 401/403 (API, WebSocket).
    redirect_to_login: ClassVar[bool] = True

    def deny(self, status: int, message: str) -> None:
        """Refuse an unauthenticated request; browsers' page loads go to the login page."""
        provider = self.zasper.identity_provider
        login = provider.login_url()
        if (
            status == 401
            and login is not None
            and self.redirect_to_login
            and self.request.method in ("GET", "HEAD")
            and not self.is_websocket_request
        ):
            from tornado.httputil import url_concat

            self.redirect(url_concat(url_path_join(self.base_url, login), {"next": self._url_without_token()}))
            raise web.Finish()
        reasons = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}
        raise web.HTTPError(status, "%s", message, reason=reasons.get(status, "Forbidden"))

    def get_current_user(self) -> User | None:
        return getattr(self, "_current_user", None)

    # -- logging without secrets -------------------------------------------
    def _request_summary(self) -> str:
        # tornado's version includes the query string, which may hold ?token=.
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    # -- errors -------------------------------------------------------------
    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:  # type: ignore[override]
        status = status_for_exception(value) if value is not None else None
        if value is not None and status is not None and not isinstance(value, web.HTTPError):
            log.warning("%s %s -> %s: %s", self.request.method, self.request.path, status, value)
            return
        if isinstance(value, web.HTTPError):
            if value.log_message:
                message = value.log_message % value.args if value.args else value.log_message
                log.warning("%d %s: %s", value.status_code, self._request_summary(), message)
            return
        # tornado's own version logs repr(request), whose URI may carry ?token=.
        log.error("Uncaught exception %s", self._request_summary(), exc_info=value)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """A small page saying what went wrong (HTTPError messages are meant for users)."""
        import html

        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = ""
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        title = f"{status_code} {html.escape(self._reason)}"
        body = f"<p>{html.escape(message)}</p>" if message else ""
        self.finish(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>")


class APIHandler(BaseHandler):
    """JSON in, JSON out, errors as `{"message": …, "reason": …}`."""

    auth_required: ClassVar[bool | None] = None
    redirect_to_login: ClassVar[bool] = False

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for name, value in API_HEADERS:
            self.set_header(name, value)
        self._set_cors_headers()

    def _set_cors_headers(self) -> None:
        """CORS is closed unless the operator allowed an origin; then echo it."""
        origin = self.request.headers.get("Origin")
        if not origin or not (self.settings.get("allow_origin") or self.settings.get("allow_origin_pat")):
            return
        if self.origin_allowed():
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Credentials", "true")
            self.set_header("Vary", "Origin")

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.origin_allowed():
            raise web.HTTPError(403, "Origin not allowed", reason="Origin not allowed")
        if self.request.method == "OPTIONS":
            # CORS preflights carry no credentials; options() answers them.
            if not self.host_allowed():
                raise web.HTTPError(403, "Host not allowed", reason="Host not allowed")
            return
        await super().prepare()

    def options(self, *args: Any, **kwargs: Any) -> None:
        """Answer a CORS preflight (the allowed origin was checked in prepare)."""
        self.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
        self.set_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type, X-XSRFToken, X-Requested-With, Accept",
        )
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def get_json_body(self) -> Any:
        """The request body parsed as JSON whatever its Content-Type (clients send text/plain)."""
        body = self.request.body
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise web.HTTPError(400, f"Invalid JSON in body of request: {e}", reason="Invalid JSON") from None

    def finish_json(self, model: Any, status: int = 200) -> None:
        """Send `model` as JSON with `status`."""
        self.set_status(status)
        self.finish(orjson.dumps(model))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = ""
        reason = self._reason
        if exc is not None:
            mapped = status_for_exception(exc)
            if mapped is not None and not isinstance(exc, web.HTTPError):
                self.set_status(mapped)
                status_code = mapped
                reason = self._reason
                message = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
                if isinstance(exc, OSError) and exc.filename and message and str(exc.filename) not in message:
                    message = f"{message}: {exc.filename}"
            elif isinstance(exc, web.HTTPError):
                message = exc.log_message % exc.args if exc.log_message and exc.args else (exc.log_message or "")
                reason = exc.reason or reason
            else:
                message = "Unhandled error"
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(orjson.dumps({"message": message or reason, "reason": reason}))


class NotFoundHandler(BaseHandler):
    """Unknown URLs: a 404 that still carries the security (and hub) headers."""

    auth_required = False

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.host_allowed():
            raise web.HTTPError(403, "Host not allowed", reason="Host not allowed")
        raise web.HTTPError(404)
