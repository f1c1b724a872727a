"""The thin tornado adapter between request handlers and identity providers.

It builds a `RequestInfo` from a handler's request, verifies the signed
browser-session cookie before a provider ever sees it, and applies the
provider's answer (start a session cookie, clear a stale one).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

from zasperhub.auth.base import AuthResult, IdentityProvider, RequestInfo

if TYPE_CHECKING:
    from tornado.web import RequestHandler

#: Browser sessions last this long unless the operator sets another bound.
DEFAULT_SESSION_SECONDS = 14 * 24 * 3600


def _verified_session(handler: RequestHandler, provider: IdentityProvider, max_age: float) -> str | None:
    """The session cookie's payload if its signature, age and fingerprint hold."""
    raw = handler.get_signed_cookie(provider.cookie_name, max_age_days=max_age / 86400)
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        if data["f"] != provider.session_fingerprint() or time.time() - data["t"] > max_age:
            return None
        return str(data["u"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def request_info(handler: RequestHandler, provider: IdentityProvider, max_age: float) -> RequestInfo:
    """A framework-free view of the handler's request."""
    req = handler.request
    cookies: dict[str, str] = {}
    session_user = _verified_session(handler, provider, max_age)
    if session_user is not None:
        cookies[provider.cookie_name] = session_user
    query = {k: v[-1].decode("utf-8", "replace") for k, v in req.query_arguments.items() if v}
    return RequestInfo(
        method=req.method or "GET",
        path=req.path,
        headers=req.headers,
        query=query,
        cookies=cookies,
        remote_ip=req.remote_ip or "",
        secure=req.protocol == "https",
    )


def start_session(handler: RequestHandler, provider: IdentityProvider, username: str, max_age: float) -> None:
    """Set the signed session cookie (HttpOnly, SameSite=Lax, Secure under https)."""
    payload = orjson.dumps({"u": username, "f": provider.session_fingerprint(), "t": int(time.time())})
    handler.set_signed_cookie(
        provider.cookie_name,
        payload,
        expires_days=max_age / 86400,
        path=handler.settings.get("base_url", "/"),
        httponly=True,
        samesite="Lax",
        secure=handler.request.protocol == "https",
    )


def end_session(handler: RequestHandler, provider: IdentityProvider) -> None:
    """Clear the session cookie."""
    handler.clear_cookie(provider.cookie_name, path=handler.settings.get("base_url", "/"))


async def authenticate(handler: RequestHandler, provider: IdentityProvider, max_age: float = DEFAULT_SESSION_SECONDS) -> AuthResult:
    """Run the provider for this request and apply cookie side effects."""
    result = await provider.authenticate(request_info(handler, provider, max_age))
    if result.user is not None and result.set_cookie:
        start_session(handler, provider, result.user.username, max_age)
    return result
