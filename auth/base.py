"""The identity-provider contract shared by token, password and hub auth.

Nothing here imports a web framework: a provider sees a `RequestInfo` and
returns an `AuthResult`; the web adapter does the HTTP side effects.
"""

from __future__ import annotations

import abc
import dataclasses
import hmac
import time
from collections.abc import Mapping
from typing import Any


class AuthSetupError(Exception):
    """Auth cannot start as configured (e.g. no password set); one-line message."""


@dataclasses.dataclass(frozen=True)
class User:
    """The authenticated identity, in the shape of Jupyter Server's `/api/me`."""

    username: str
    name: str = ""
    display_name: str = ""
    initials: str | None = None
    avatar_url: str | None = None
    color: str | None = None
    # How the request was authenticated: "token" (header or query),
    # "cookie" (browser session; XSRF applies) or "hub".
    via: str = "token"
    scopes: frozenset[str] = frozenset({"*"})

    def model(self) -> dict[str, Any]:
        """The `identity` object of `/api/me`."""
        return {
            "username": self.username,
            "name": self.name or self.username,
            "display_name": self.display_name or self.name or self.username,
            "initials": self.initials,
            "avatar_url": self.avatar_url,
            "color": self.color,
        }


@dataclasses.dataclass(frozen=True)
class RequestInfo:
    """What a provider may look at: all plain data, no framework objects.

    `cookies` holds cookie values already verified by the adapter's signing
    key (forged or tampered cookies never reach a provider).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    cookies: Mapping[str, str]
    remote_ip: str = ""
    secure: bool = False

    @property
    def is_websocket(self) -> bool:
        """True for a WebSocket upgrade (browsers can only put a token in its URL)."""
        return self.headers.get("Upgrade", "").lower() == "websocket"


@dataclasses.dataclass
class AuthResult:
    """A provider's answer.

    `user` is None when the request is anonymous.  `set_cookie` asks the
    adapter to start a browser session for this user (e.g. after `?token=`),
    `error` carries a message worth showing (wrong token, expired, locked out).
    """

    user: User | None = None
    set_cookie: bool = False
    error: str | None = None
    status: int = 401
    # Ask the adapter to drop the browser's session (expired or revoked).
    clear_session: bool = False


@dataclasses.dataclass(frozen=True)
class LoginOutcome:
    """The answer to a login-form submission.

    Exactly one of `user` (success) and `error` is set.  `retry_after` is the
    number of seconds a throttled client must wait (the form answers 429).
    """

    user: User | None = None
    error: str | None = None
    retry_after: float = 0.0


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    """Compare secrets without leaking their length of common prefix."""
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(a, b)


class IdentityProvider(abc.ABC):
    """Turns a request's credentials into a `User`.

    Subclasses implement `authenticate`.  `login_url` is where a browser
    without credentials is sent (None: answer 401/403 instead).  A provider
    that has a login form implements `login` as well.
    """

    #: Name of the signed browser-session cookie the adapter manages.
    cookie_name: str = "zasperhub-session"
    #: Whether the adapter's own session cookie is used at all (the hub
    #: provider keeps JupyterHub's OAuth cookie instead).
    session_cookie: bool = True
    #: Further signed cookies whose verified values the provider reads from
    #: `RequestInfo.cookies` (e.g. the hub access token after OAuth).
    credential_cookies: tuple[str, ...] = ()

    @abc.abstractmethod
    async def authenticate(self, request: RequestInfo) -> AuthResult:
        """Identify the sender of `request`; never raises for bad credentials."""

    def header_user(self, headers: Mapping[str, str]) -> User | None:
        """The user that `headers` alone authenticate, synchronously and with no side effects.

        Used by the lean path for polling endpoints (`platform/web/probe.py`).
        None means "not decidable this way": the request then takes the full
        handler path, which gives the real answer (including every error).
        A provider must only return a user that `authenticate` would return
        for the same request with no cookies and no query string.
        """
        return None

    def login_url(self) -> str | None:
        """Path (below base_url) of the login page, or None when there is none."""
        return None

    def logout_url(self) -> str | None:
        """Path (below base_url) that ends the browser session, or None."""
        return None

    #: What the login form asks for ("password", "token"), or None: no form.
    login_secret_kind: str | None = None

    async def login(self, secret: str, client: str) -> LoginOutcome:
        """Check a login-form submission from `client` (its address).

        Only providers with a `login_secret_kind` implement this.
        """
        return LoginOutcome(error="This server has no login form")

    #: Logged-out sessions remembered at most (a signed cookie stays valid
    #: until it expires, so logout must revoke it server-side).
    max_revoked_sessions: int = 10000

    def revoke_session(self, session_id: str, until: float) -> None:
        """Refuse the session `session_id` from now until `until` (epoch seconds)."""
        revoked: dict[str, float] = self.__dict__.setdefault("_revoked_sessions", {})
        now = time.time()
        if len(revoked) >= self.max_revoked_sessions:
            for sid in [k for k, v in revoked.items() if v < now]:
                del revoked[sid]
            while len(revoked) >= self.max_revoked_sessions:
                del revoked[next(iter(revoked))]
        revoked[session_id] = until

    def session_revoked(self, session_id: str) -> bool:
        """Whether a session was ended by logout."""
        until = self.__dict__.get("_revoked_sessions", {}).get(session_id)
        return until is not None and until > time.time()

    def session_fingerprint(self) -> str:
        """A value stored in the session cookie and checked on every request.

        Changing it (new token, new password) invalidates existing sessions.
        """
        return ""
