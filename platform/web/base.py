"""Base request handlers: authentication, host/origin checks, JSON errors.

Every concrete handler sets `auth_required` (True or False) explicitly; a
test walks the route table and fails on any handler that leaves it unset.
Storage and kernel code raise the built-in `OSError` family and `KeyError`;
this module is the one place they become HTTP status codes.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

import orjson
from tornado import web

from zasperhub.auth import web as auth_web
from zasperhub.auth.base import User

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


def status_for_exception(exc: BaseException) -> int | None:
    """The HTTP status for a non-HTTP exception, or None for a real bug (500)."""
    if isinstance(exc, web.HTTPError):
        return exc.status_code
    for kind, status in ERROR_STATUS:
        if isinstance(exc, kind):
            return status
    return None


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


class BaseHandler(web.RequestHandler):
    """Common behaviour for every page and API handler."""

    #: Must be set to True or False by every concrete handler.
    auth_required: ClassVar[bool | None] = None

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
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", self.settings.get("csp", "frame-ancestors 'self'"))
        self.set_header("Referrer-Policy", "same-origin")
        for name, value in self.settings.get("extra_headers", {}).items():
            self.set_header(name, value)

    # -- host / origin (DNS rebinding, CORS) ------------------------------
    def host_allowed(self) -> bool:
        """Refuse Host headers that could come from DNS rebinding."""
        if self.settings.get("allow_remote_access"):
            return True
        host = split_host(self.request.host or "")
        return _is_loopback_host(host) or host in self.settings.get("local_hostnames", ())

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

    # -- authentication ---------------------------------------------------
    async def prepare(self) -> None:  # type: ignore[override]
        if not self.host_allowed():
            log.warning("Blocked request with Host header %r (DNS rebinding guard)", self.request.host)
            raise web.HTTPError(403, "Host not allowed", reason="Host not allowed")
        self.zasper.note_activity(self)
        provider = self.zasper.identity_provider
        result = await auth_web.authenticate(self, provider, self.zasper.session_max_age)
        self.current_user = result.user
        if self.auth_required is None:
            raise web.HTTPError(500, f"{type(self).__name__} does not declare auth_required")
        if self.auth_required and result.user is None:
            self.deny(result.status if result.error and result.status == 403 else 401, result.error or "Unauthorized")
            return
        if result.user is not None and result.user.via == "cookie" and self.request.method in UNSAFE_METHODS:
            # Only browser sessions need XSRF: a token header cannot be forged
            # cross-site.
            self.check_xsrf_cookie()

    def check_xsrf_cookie(self) -> None:
        """XSRF is checked in `prepare` for cookie-authenticated writes only."""
        if self.current_user is None or self.current_user.via != "cookie":
            return
        super().check_xsrf_cookie()

    def deny(self, status: int, message: str) -> None:
        """Refuse an unauthenticated request (pages may redirect instead)."""
        raise web.HTTPError(status, message, reason="Forbidden" if status == 403 else "Unauthorized")

    def get_current_user(self) -> User | None:
        return getattr(self, "current_user", None)

    # -- errors -------------------------------------------------------------
    def log_exception(self, typ: Any, value: BaseException | None, tb: Any) -> None:  # type: ignore[override]
        status = status_for_exception(value) if value is not None else None
        if value is not None and status is not None and not isinstance(value, web.HTTPError):
            log.warning("%s %s -> %s: %s", self.request.method, self.request.path, status, value)
            return
        super().log_exception(typ, value, tb)


class APIHandler(BaseHandler):
    """JSON in, JSON out, errors as `{"message": …, "reason": …}`."""

    auth_required: ClassVar[bool | None] = None

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.origin_allowed():
            raise web.HTTPError(403, "Origin not allowed", reason="Origin not allowed")
        await super().prepare()

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
