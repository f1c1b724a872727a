"""Token identity: the default for a single-user server.

Accepted in `Authorization: token T` / `Authorization: Bearer T`, as
`?token=T` (which then starts a browser session cookie, so the token can be
dropped from the URL), or through that signed session cookie.  A browser
without the token can also paste it into the login form.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping

from zasperhub.auth.base import (
    AuthResult,
    IdentityProvider,
    LoginOutcome,
    RequestInfo,
    User,
    constant_time_equal,
)
from zasperhub.auth.throttle import LoginThrottle

#: Tokens longer than this are rejected before any comparison work.
MAX_TOKEN_LENGTH = 4096


def generate_token() -> str:
    """A fresh random token (48 hex chars, like Jupyter's)."""
    return secrets.token_hex(24)


def token_from_environment() -> str | None:
    """The token set through the environment, the way Jupyter users know it."""
    for name in ("ZASPERHUB_TOKEN", "JUPYTER_TOKEN"):
        value = os.environ.get(name)
        if value:
            return value
    path = os.environ.get("JUPYTER_TOKEN_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return None


def authorization_token(value: str) -> str | None:
    """The token in an `Authorization` header value (`token T` or `Bearer T`), if any."""
    scheme, _, credential = value.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and credential.strip():
        return credential.strip()
    return None


def header_token(request: RequestInfo) -> str | None:
    """The token carried by an `Authorization: token|bearer` header, if any."""
    return authorization_token(request.headers.get("Authorization", ""))


class TokenIdentityProvider(IdentityProvider):
    """Authenticates requests that present the server's token.

    An empty token disables authentication entirely (every request is the
    local user) — only ever chosen explicitly by the operator.
    """

    login_secret_kind: str | None = "token"

    def __init__(
        self,
        token: str,
        username: str = "zasper",
        cookie_name: str = "zasperhub-session",
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.token = token
        self.username = username
        self.cookie_name = cookie_name
        self.throttle = throttle or LoginThrottle()

    def _user(self, via: str) -> User:
        return User(username=self.username, name=self.username, display_name=self.username, via=via)

    def anonymous_allowed(self) -> bool:
        """Whether requests without credentials are the local user (empty token)."""
        return not self.token

    def check_token(self, candidate: str | None) -> bool:
        """Constant-time check of a presented token."""
        if not self.token or candidate is None or len(candidate) > MAX_TOKEN_LENGTH:
            return False
        return constant_time_equal(candidate, self.token)

    def session_fingerprint(self) -> str:
        # A new token logs out every browser that used the old one.
        return hashlib.sha256(("token:" + self.token).encode()).hexdigest()[:16]

    def login_url(self) -> str | None:
        return None if self.anonymous_allowed() else "login"

    def logout_url(self) -> str | None:
        return "logout"

    def missing_credentials_message(self) -> str:
        return "Authentication required: pass the server's token"

    def header_user(self, headers: Mapping[str, str]) -> User | None:
        # Exactly the cases `authenticate` accepts without touching cookies
        # or the query: no credentials needed, or a valid header token.
        if self.anonymous_allowed():
            return self._user("token")
        presented = authorization_token(headers.get("Authorization", ""))
        if presented is not None and self.check_token(presented):
            return self._user("token")
        return None

    async def authenticate(self, request: RequestInfo) -> AuthResult:
        if self.anonymous_allowed():
            return AuthResult(user=self._user("token"))
        presented = header_token(request)
        if presented is not None:
            if self.check_token(presented):
                return AuthResult(user=self._user("token"))
            return AuthResult(error="Invalid token", status=403)
        query_token = request.query.get("token")
        if query_token:
            if self.check_token(query_token):
                # WebSockets cannot carry cookies from non-browser clients and
                # must not start sessions; everything else may.
                return AuthResult(user=self._user("token"), set_cookie=not request.is_websocket)
            return AuthResult(error="Invalid token", status=403)
        if request.cookies.get(self.cookie_name):
            # The adapter only passes cookies whose signature and fingerprint
            # it verified, so presence means a valid session.
            return AuthResult(user=self._user("cookie"))
        return AuthResult(error=self.missing_credentials_message())

    async def check_secret(self, secret: str) -> bool:
        """Whether a login-form secret is right (here: the token)."""
        return self.check_token(secret)

    async def login(self, secret: str, client: str) -> LoginOutcome:
        wait = self.throttle.retry_after(client)
        if wait > 0:
            return LoginOutcome(error=f"Too many failed attempts; try again in {int(wait) + 1} s", retry_after=wait)
        if secret and await self.check_secret(secret):
            self.throttle.success(client)
            return LoginOutcome(user=self._user("cookie"))
        self.throttle.failure(client)
        return LoginOutcome(error=f"Invalid {self.login_secret_kind}")
