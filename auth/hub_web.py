"""The tornado side of hub OAuth: state cookie, callback, token cookie.

`begin_login` sends the browser to the hub's authorize URL after storing the
OAuth `state` in a short-lived signed cookie; `finish_login` runs at
`{JUPYTERHUB_SERVICE_PREFIX}oauth_callback`: the `state` argument must equal
that cookie and name a login this server started (so a forged, replayed or
stale callback gets 403), the code is exchanged with the PKCE verifier, the
token's owner must hold this server's access scope, and the token is stored
in the signed, HttpOnly cookie the hub's conventions name after the OAuth
client.  The protocol itself lives in `zasperhub.auth.hub_client`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tornado import web
from zasperhub.auth.hub_client import (
    STATE_MAX_AGE,
    HubClient,
    HubUnavailable,
    OAuthError,
)

if TYPE_CHECKING:
    from tornado.web import RequestHandler

log = logging.getLogger("zasperhub")

#: OAuth codes and states are short; longer arguments are refused unread.
MAX_ARGUMENT_LENGTH = 1024


def _secure(handler: RequestHandler, client: HubClient) -> bool:
    if client.public_url:
        return urlparse(client.public_url).scheme == "https"
    return handler.request.protocol == "https"


def cookie_kwargs(handler: RequestHandler, client: HubClient) -> dict[str, Any]:
    """Attributes of the token cookie: the hub's options win over our Lax default."""
    kwargs: dict[str, Any] = {"path": client.cookie_path, "httponly": True, "samesite": "Lax"}
    if _secure(handler, client) or client.host_prefix_cookies:
        kwargs["secure"] = True
    kwargs.update(client.cookie_options)
    return kwargs


def _clear(handler: RequestHandler, client: HubClient, name: str) -> None:
    if name.startswith("__Host-"):
        handler.clear_cookie(name, path="/", secure=True)
    else:
        handler.clear_cookie(name, path=client.cookie_path)


def clear_state_cookies(handler: RequestHandler, client: HubClient) -> None:
    """Drop every OAuth state cookie of this client that the browser sent."""
    for name in list(handler.request.cookies):
        if name.startswith(client.state_cookie_name):
            _clear(handler, client, name)


def begin_login(handler: RequestHandler, client: HubClient, next_url: str) -> None:
    """Redirect to the hub's authorize URL with a fresh state (cookie) and PKCE challenge."""
    taken = handler.get_cookie(client.state_cookie_name) is not None
    url, state, cookie_name = client.begin_login(next_url, taken)
    kwargs: dict[str, Any] = {"path": client.cookie_path, "httponly": True}
    if _secure(handler, client) or client.host_prefix_cookies:
        kwargs["secure"] = True
    # The hub's cookie options apply, except to the lifetime (logins are short).
    kwargs.update({k: v for k, v in client.cookie_options.items() if k.lower() not in ("expires", "expires_days", "max_age")})
    kwargs["max_age"] = STATE_MAX_AGE
    handler.set_signed_cookie(cookie_name, state, **kwargs)
    handler.set_header("Cache-Control", "no-store")
    handler.redirect(url)


def _argument(handler: RequestHandler, name: str) -> str | None:
    value = handler.get_query_argument(name, None)
    if value is not None and len(value) > MAX_ARGUMENT_LENGTH:
        raise web.HTTPError(400, f"OAuth {name} is too long. Try logging in again.")
    return value


async def finish_login(handler: RequestHandler, client: HubClient) -> None:
    """Handle `GET oauth_callback`; raises `tornado.web.HTTPError` with a clear message."""
    error = _argument(handler, "error")
    if error:
        detail = handler.get_query_argument("error_description", error)[:MAX_ARGUMENT_LENGTH]
        raise web.HTTPError(400, f"JupyterHub refused the login: {detail}")
    code = _argument(handler, "code")
    if not code:
        raise web.HTTPError(400, "OAuth callback without a code. Try logging in again.")
    state = _argument(handler, "state")
    if not state:
        raise web.HTTPError(400, "OAuth state is missing. Try logging in again.")
    cookie_name = client.pending_cookie_name(state)
    cookie_state = handler.get_signed_cookie(cookie_name, max_age_days=STATE_MAX_AGE / 86400)
    if cookie_state is None and handler.current_user is not None:
        # A stale callback (e.g. the back button) from someone already logged in:
        # no new token, just go where that login wanted to go.
        clear_state_cookies(handler, client)
        handler.redirect(client.peek_next_url(state))
        return
    if cookie_state is None or cookie_state.decode("ascii", "replace") != state:
        log.warning("OAuth callback with a state that does not match its cookie %s", cookie_name)
        clear_state_cookies(handler, client)
        raise web.HTTPError(403, "oauth state does not match. Try logging in again.")
    clear_state_cookies(handler, client)
    try:
        pending = client.take_login(state)
        token = await client.exchange_code(code, pending.code_verifier)
        model = await client.identify(token, use_cache=False)
    except OAuthError as e:
        raise web.HTTPError(e.status, e.message) from None
    except HubUnavailable as e:
        log.error("Cannot check the new login with JupyterHub: %s", e)
        raise web.HTTPError(503, "Cannot reach JupyterHub to finish the login right now; try again") from None
    if model is None:
        raise web.HTTPError(403, "JupyterHub did not accept the token it just issued. Try logging in again.")
    if not client.allows(model):
        name = str(model.get("name", "?"))
        log.warning("Hub %s %r logged in but may not access this server", model.get("kind", "user"), name)
        raise web.HTTPError(403, f"{model.get('kind', 'user')} {name} is not allowed to access this server")
    log.info("Logged in hub user %s", model.get("name"))
    handler.set_signed_cookie(client.cookie_name, token, **cookie_kwargs(handler, client))
    handler.redirect(pending.next_url or client.base_url)
