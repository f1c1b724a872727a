"""The thin tornado adapter between request handlers and identity providers.

It builds a `RequestInfo` from a handler's request, verifies the signed
browser-session cookie before a provider ever sees it, and applies the
provider's answer (start a session cookie, clear a stale one).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

import orjson

from zasperhub.auth.base import AuthResult, IdentityProvider, RequestInfo

if TYPE_CHECKING:
    from tornado.web import RequestHandler

#: Browser sessions last this long unless the operator sets another bound.
DEFAULT_SESSION_SECONDS = 14 * 24 * 3600
#: Signed cookies longer than this are refused unread.
MAX_COOKIE_LENGTH = 8192


def _session_payload(handler: RequestHandler, provider: IdentityProvider, max_age: float) -> dict[str, Any] | None:
    """The session cookie's payload if its signature, age, fingerprint and id hold."""
    if not provider.session_cookie:
        return None
    if len(handler.get_cookie(provider.cookie_name) or "") > MAX_COOKIE_LENGTH:
        return None
    raw = handler.get_signed_cookie(provider.cookie_name, max_age_days=max_age / 86400)
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        if data["f"] != provider.session_fingerprint() or time.time() - data["t"] > max_age:
            return None
        if provider.session_revoked(str(data["s"])):
            return None
        return data
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _verified_session(handler: RequestHandler, provider: IdentityProvider, max_age: float) -> str | None:
    """The session's user name if the cookie is valid."""
    data = _session_payload(handler, provider, max_age)
    return None if data is None else str(data["u"])


def request_info(handler: RequestHandler, provider: IdentityProvider, max_age: float) -> RequestInfo:
    """A framework-free view of the handler's request."""
    req = handler.request
    cookies: dict[str, str] = {}
    session_user = _verified_session(handler, provider, max_age)
    if session_user is not None:
        cookies[provider.cookie_name] = session_user
    for name in provider.credential_cookies:
        if len(handler.get_cookie(name) or "") > MAX_COOKIE_LENGTH:
            continue
        value = handler.get_signed_cookie(name, max_age_days=max_age / 86400)
        if value:
            cookies[name] = value.decode("utf-8", "replace")
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
    payload = orjson.dumps(
        {"u": username, "f": provider.session_fingerprint(), "t": int(time.time()), "s": secrets.token_urlsafe(12)}
    )
    handler.set_signed_cookie(
        provider.cookie_name,
        payload,
        expires_days=max_age / 86400,
        path=handler.settings.get("base_url", "/"),
        httponly=True,
        samesite="Lax",
        secure=handler.request.protocol == "https",
    )


def end_session(handler: RequestHandler, provider: IdentityProvider, max_age: float = DEFAULT_SESSION_SECONDS) -> None:
    """Clear the session cookie (revoking it server-side) and any credential cookies."""
    path = handler.settings.get("base_url", "/")
    if provider.session_cookie:
        data = _session_payload(handler, provider, max_age)
        if data is not None:
            provider.revoke_session(str(data["s"]), data["t"] + max_age)
        handler.clear_cookie(provider.cookie_name, path=path)
    for name in provider.credential_cookies:
        handler.clear_cookie(name, path=path)


async def authenticate(handler: RequestHandler, provider: IdentityProvider, max_age: float = DEFAULT_SESSION_SECONDS) -> AuthResult:
    """Run the provider for this request and apply cookie side effects."""
    result = await provider.authenticate(request_info(handler, provider, max_age))
    if result.user is not None and result.set_cookie and provider.session_cookie:
        start_session(handler, provider, result.user.username, max_age)
    if result.clear_session:
        end_session(handler, provider, max_age)
    return result
