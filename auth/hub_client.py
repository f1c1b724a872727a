"""A small JupyterHub OAuth client for the single-user server (no jupyterhub import).

Importing `jupyterhub.services.auth` pulls in the hub's ORM and SQLAlchemy
(~40 MB per user server), so the single-user server speaks the hub's
documented contract itself.  Facts it relies on (JupyterHub ≥ 2, checked
against 6.1):

- Settings arrive in the environment: `JUPYTERHUB_API_URL`,
  `JUPYTERHUB_API_TOKEN` (also the OAuth client secret),
  `JUPYTERHUB_CLIENT_ID` (also the name of the token cookie),
  `JUPYTERHUB_OAUTH_CALLBACK_URL`, `JUPYTERHUB_OAUTH_ACCESS_SCOPES` (JSON
  list; older hubs send `JUPYTERHUB_OAUTH_SCOPES`), `JUPYTERHUB_HOST`,
  `JUPYTERHUB_BASE_URL`, `JUPYTERHUB_SERVICE_PREFIX`,
  `JUPYTERHUB_COOKIE_OPTIONS` (JSON), `JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED`,
  `JUPYTERHUB_ALLOW_TOKEN_IN_URL`, `JUPYTERHUB_PUBLIC_URL` and, with internal
  SSL, `JUPYTERHUB_SSL_KEYFILE|CERTFILE|CLIENT_CA`.
- `GET {api}/user` with `Authorization: token T` answers the token owner's
  model (`name`, `kind`, `scopes`); 403 when the token is unknown or expired.
- Authorization code flow: `{hub}/api/oauth2/authorize` with `client_id`,
  `redirect_uri`, `response_type=code`, `state` and a PKCE S256 challenge
  (verified by JupyterHub ≥ 6, ignored by older hubs), then `POST
  {api}/oauth2/token` (form encoded, `client_secret` = the API token,
  `code_verifier`) answers `{"access_token": …}`.
- Access needs one of the scopes the hub lists for this server
  (`access:servers!server=<user>/<name>`, `access:servers!user=<user>`); an
  unfiltered `access:servers` covers every server.

This module is framework-free; `zasperhub.auth.hub_web` does the cookies.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

log = logging.getLogger("zasperhub")

#: Seconds a token's answer (identity or refusal) is reused.
DEFAULT_CACHE_SECONDS = 60
#: Tokens remembered at most; the oldest go first (bounded memory under floods).
DEFAULT_CACHE_ENTRIES = 1024
#: Seconds an OAuth login may take between redirect and callback (the hub's value).
STATE_MAX_AGE = 600
#: Logins in flight at most (each is one small dict until its callback).
MAX_PENDING_STATES = 1024
#: Seconds one request to the hub API may take.
REQUEST_TIMEOUT = 10.0


class HubUnavailable(Exception):
    """The hub API could not answer (down, timing out, 5xx, nonsense reply)."""


class OAuthError(Exception):
    """An OAuth callback that must be refused; `status` and a message for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _bool_env(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _join(base: str, *parts: str) -> str:
    """Join URL path pieces with exactly one slash between them."""
    url = base
    for part in parts:
        url = url.rstrip("/") + "/" + part.lstrip("/")
    return url


def parse_scopes(env: Mapping[str, str]) -> set[str]:
    """The access scopes the hub sent, or the defaults for this user's server."""
    for name in ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", "JUPYTERHUB_OAUTH_SCOPES"):
        raw = env.get(name)
        if raw:
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("Ignoring %s: not a JSON list", name)
                continue
            if isinstance(value, list) and all(isinstance(s, str) for s in value):
                return set(value)
            log.warning("Ignoring %s: not a JSON list of strings", name)
    user = env.get("JUPYTERHUB_USER", "")
    if not user:
        return set()  # fail closed: nobody is granted access
    server = env.get("JUPYTERHUB_SERVER_NAME", "")
    return {f"access:servers!server={user}/{server}", f"access:servers!user={user}"}


def _split_scope(scope: str) -> tuple[str, str, str]:
    """`base!kind=value` → (base, kind, value); unfiltered → (base, "", "")."""
    base, _, filt = scope.partition("!")
    kind, _, value = filt.partition("=")
    return base, kind, value


def scope_covers(granted: str, required: str) -> bool:
    """Whether holding `granted` satisfies `required` (user and server filters).

    Group filters are not resolved (that needs the hub's database), the same
    limit JupyterHub documents for its own services.
    """
    if granted == required:
        return True
    g_base, g_kind, g_value = _split_scope(granted)
    r_base, r_kind, r_value = _split_scope(required)
    if g_base != r_base:
        return False
    if not g_kind:
        return True  # unfiltered covers every filter
    # A user filter covers that user's named servers.
    return g_kind == "user" and r_kind == "server" and r_value.partition("/")[0] == g_value


def access_granted(required: Iterable[str], granted: Iterable[str]) -> bool:
    """True when any granted scope covers any required scope."""
    required = list(required)
    return any(scope_covers(g, r) for g in granted for r in required)


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE (verifier, S256 challenge) pair (RFC 7636 §4)."""
    verifier = secrets.token_urlsafe(32)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclasses.dataclass
class PendingLogin:
    """What the server remembers between the redirect to the hub and the callback."""

    next_url: str
    code_verifier: str
    cookie_name: str
    expires: float


class _ExpiringCache:
    """A bounded mapping whose entries expire; oldest entries are evicted first."""

    def __init__(self, max_age: float, max_entries: int) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._items: collections.OrderedDict[str, tuple[float, Any]] = collections.OrderedDict()

    def get(self, key: str) -> tuple[bool, Any]:
        item = self._items.get(key)
        if item is None:
            return False, None
        if item[0] < time.monotonic():
            del self._items[key]
            return False, None
        return True, item[1]

    def put(self, key: str, value: Any) -> None:
        if self.max_age <= 0:
            return
        self._items.pop(key, None)
        while len(self._items) >= self.max_entries:
            self._items.popitem(last=False)
        self._items[key] = (time.monotonic() + self.max_age, value)

    def __len__(self) -> int:
        return len(self._items)


class HubClient:
    """The hub as seen from one single-user server: identities, OAuth, scopes."""

    def __init__(
        self,
        env: Mapping[str, str],
        base_url: str,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
    ) -> None:
        self.api_url = (env.get("JUPYTERHUB_API_URL") or "http://127.0.0.1:8081/hub/api").rstrip("/")
        self.api_token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.client_id = env.get("JUPYTERHUB_CLIENT_ID", "")
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.hub_host = env.get("JUPYTERHUB_HOST", "")
        self.hub_prefix = _join(env.get("JUPYTERHUB_BASE_URL") or "/", "hub") + "/"
        self.redirect_uri = env.get("JUPYTERHUB_OAUTH_CALLBACK_URL") or _join(self.base_url, "oauth_callback")
        self.access_scopes = parse_scopes(env)
        self.allow_token_in_url = _bool_env(env.get("JUPYTERHUB_ALLOW_TOKEN_IN_URL"))
        self.host_prefix_cookies = _bool_env(env.get("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED"))
        self.public_url = env.get("JUPYTERHUB_PUBLIC_URL", "")
        self.cookie_options: dict[str, Any] = {}
        raw_options = env.get("JUPYTERHUB_COOKIE_OPTIONS")
        if raw_options:
            try:
                options = json.loads(raw_options)
                if isinstance(options, dict):
                    self.cookie_options = options
            except ValueError:
                log.warning("Ignoring JUPYTERHUB_COOKIE_OPTIONS: not a JSON object")
        # Internal SSL: the hub may require a client certificate of ours.
        self._ssl: dict[str, Any] = {
            key: env[name]
            for key, name in (
                ("client_key", "JUPYTERHUB_SSL_KEYFILE"),
                ("client_cert", "JUPYTERHUB_SSL_CERTFILE"),
                ("ca_certs", "JUPYTERHUB_SSL_CLIENT_CA"),
            )
            if env.get(name)
        }
        self._identities = _ExpiringCache(cache_seconds, cache_entries)
        self._inflight: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._pending: dict[str, PendingLogin] = {}

    # -- names the hub's conventions fix ----------------------------------------------
    @property
    def cookie_name(self) -> str:
        """The token cookie: named after the OAuth client (e.g. `jupyterhub-user-alice`)."""
        return ("__Host-" if self.host_prefix_cookies else "") + self.client_id

    @property
    def state_cookie_name(self) -> str:
        """The OAuth state cookie (a random suffix is added when one is already set)."""
        return self.cookie_name + "-oauth-state"

    @property
    def cookie_path(self) -> str:
        """`__Host-` cookies must sit on `/`; others on the server's prefix."""
        return "/" if self.host_prefix_cookies else self.base_url

    @property
    def authorize_url(self) -> str:
        return self.hub_host + _join(self.hub_prefix, "api/oauth2/authorize")

    @property
    def token_url(self) -> str:
        return _join(self.api_url, "oauth2/token")

    # -- token → identity --------------------------------------------------------------
    async def _request(self, method: str, url: str, token: str, body: bytes | None = None, content_type: str = "") -> tuple[int, bytes]:
        headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = HTTPRequest(url, method=method, body=body, headers=headers, request_timeout=REQUEST_TIMEOUT, **self._ssl)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise HubUnavailable(f"cannot reach the JupyterHub API at {self.api_url}: {e}") from None
        if response.code == 599:  # tornado's code for timeouts and connection errors
            raise HubUnavailable(f"cannot reach the JupyterHub API at {self.api_url}: {response.error}")
        return response.code, response.body or b""

    async def _fetch_identity(self, token: str) -> dict[str, Any] | None:
        status, body = await self._request("GET", _join(self.api_url, "user"), token)
        if status in (401, 403, 404):
            return None  # unknown, revoked or expired token
        if status != 200:
            raise HubUnavailable(f"JupyterHub API answered {status} to GET /user")
        try:
            model = json.loads(body)
        except ValueError:
            model = None
        if not isinstance(model, dict):
            raise HubUnavailable("JupyterHub API answered GET /user with something other than a JSON object")
        return model

    async def identify(self, token: str, *, use_cache: bool = True) -> dict[str, Any] | None:
        """The hub's model of `token`'s owner, or None when the hub refuses the token.

        Raises `HubUnavailable` when the hub cannot answer.  Concurrent checks
        of one token share one hub request.
        """
        key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        if use_cache:
            hit, model = self._identities.get(key)
            if hit:
                return model
        waiting = self._inflight.get(key)
        if waiting is not None:
            return await asyncio.shield(waiting)
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            model = await self._fetch_identity(token)
        except Exception as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waited
            raise
        except BaseException:
            future.cancel()
            raise
        finally:
            self._inflight.pop(key, None)
        self._identities.put(key, model)
        future.set_result(model)
        return model

    def allows(self, model: Mapping[str, Any]) -> bool:
        """Whether the identity in `model` may use this server."""
        return bool(model.get("name")) and access_granted(self.access_scopes, model.get("scopes") or ())

    # -- OAuth authorization code flow -----------------------------------------------
    def begin_login(self, next_url: str, state_cookie_taken: bool) -> tuple[str, str, str]:
        """Start a login: returns (authorize URL, state, name of the state cookie to set)."""
        now = time.monotonic()
        for state_id in [s for s, p in self._pending.items() if p.expires < now]:
            del self._pending[state_id]
        while len(self._pending) >= MAX_PENDING_STATES:
            del self._pending[next(iter(self._pending))]
        cookie_name = self.state_cookie_name
        if state_cookie_taken:
            # Another login runs in this browser: its own cookie, so neither clobbers the other.
            cookie_name += "-" + secrets.token_hex(4)
        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(16)
        self._pending[state] = PendingLogin(next_url, verifier, cookie_name, now + STATE_MAX_AGE)
        params = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.authorize_url}?{urlencode(params)}", state, cookie_name

    def pending_cookie_name(self, state: str) -> str:
        """The state cookie that should hold `state` (the default name when unknown)."""
        pending = self._pending.get(state)
        return pending.cookie_name if pending is not None else self.state_cookie_name

    def take_login(self, state: str) -> PendingLogin:
        """Consume a pending login; an unknown or stale state raises OAuthError(403)."""
        pending = self._pending.pop(state, None)
        if pending is None or pending.expires < time.monotonic():
            raise OAuthError(403, "This login link expired or was already used. Try logging in again.")
        return pending

    def peek_next_url(self, state: str) -> str:
        """Where a login with `state` wanted to go (the server's root when unknown)."""
        pending = self._pending.get(state)
        return pending.next_url if pending is not None else self.base_url

    async def exchange_code(self, code: str, code_verifier: str) -> str:
        """Trade an authorization code for the user's access token."""
        form = urlencode(
            {
                "client_id": self.client_id,
                "client_secret": self.api_token,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": code_verifier,
            }
        ).encode("ascii")
        try:
            status, body = await self._request("POST", self.token_url, self.api_token, form, "application/x-www-form-urlencoded")
        except HubUnavailable as e:
            log.error("OAuth code exchange failed: %s", e)
            raise OAuthError(503, "Cannot reach JupyterHub to finish the login right now; try again") from None
        try:
            reply = json.loads(body)
        except ValueError:
            reply = None
        if status == 200 and isinstance(reply, dict) and isinstance(reply.get("access_token"), str):
            return reply["access_token"]
        detail = ""
        if isinstance(reply, dict):
            detail = str(reply.get("error_description") or reply.get("error") or "")
        log.warning("JupyterHub refused the OAuth code exchange (%d): %s", status, detail or body[:200])
        if status >= 500:
            raise OAuthError(503, "JupyterHub could not finish the login right now; try again")
        raise OAuthError(403, f"JupyterHub refused the login{': ' + detail if detail else ''}. Try logging in again.")

    async def hub_version(self) -> str:
        """Ask the hub API root for its version (raises HubUnavailable)."""
        status, body = await self._request("GET", self.api_url + "/", self.api_token)
        if status != 200:
            raise HubUnavailable(f"JupyterHub API answered {status}")
        try:
            return str(json.loads(body).get("version", "?"))
        except (ValueError, AttributeError):
            raise HubUnavailable("JupyterHub API root did not answer JSON") from None


def client_from_environment(base_url: str, cache_seconds: float = DEFAULT_CACHE_SECONDS, environ: Mapping[str, str] | None = None) -> HubClient:
    """A client configured from the process environment the hub set."""
    return HubClient(os.environ if environ is None else environ, base_url, cache_seconds=cache_seconds)
