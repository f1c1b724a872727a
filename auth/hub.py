"""Hub identity: `zasperhub-singleuser` launched by JupyterHub.

JupyterHub hands a single-user server its settings through `JUPYTERHUB_*`
environment variables; `apply_hub_environment` maps them onto the app
(service prefix → base URL, service URL → bind address, root dir).

Identity comes from the hub through our own small client
(`zasperhub.auth.hub_client`), never by importing jupyterhub, whose
service helpers pull in its ORM and SQLAlchemy (~40 MB per user server).
API requests carry a hub token in `Authorization: token|bearer` (or
`?token=` on WebSocket upgrades, which cannot carry headers from browsers);
browsers carry the access token that the OAuth callback stored in a signed
cookie.  Either way the token is resolved to a user model by the hub's API,
cached briefly, and access requires one of the server's `access:servers…`
scopes — other users, and admins without that scope, get 403.  When the
hub cannot answer, requests get 503 (never a crash or a hang).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from zasperhub.auth.base import (
    AuthResult,
    AuthSetupError,
    IdentityProvider,
    RequestInfo,
    User,
)
from zasperhub.auth.hub_client import (
    DEFAULT_CACHE_SECONDS,
    HubClient,
    HubUnavailable,
    client_from_environment,
)
from zasperhub.auth.token import MAX_TOKEN_LENGTH, header_token

if TYPE_CHECKING:
    from zasperhub.auth.activity import HubActivityReporter
    from zasperhub.platform.app import ZasperApp

log = logging.getLogger("zasperhub")

#: Attempts (with doubling waits from 0.5 s) to reach the hub at start-up.
STARTUP_CHECK_ATTEMPTS = 5


@functools.cache
def hub_version() -> str:
    """The JupyterHub version sent as `X-JupyterHub-Version` (the hub compares it).

    Read from the installed distribution's metadata: importing the package
    is what this module avoids.  Without jupyterhub installed (a slim user
    image) the hub just logs that it cannot compare versions.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jupyterhub")
    except PackageNotFoundError:
        return "unknown"


def apply_hub_environment(app: ZasperApp, environ: dict[str, str] | None = None) -> None:
    """Configure `app` from the hub's environment, unless set explicitly."""
    env = os.environ if environ is None else environ
    explicit = set(app.config.get("ZasperApp", {}).keys())

    def put(name: str, value: Any) -> None:
        if name not in explicit:
            setattr(app, name, value)

    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        put("base_url", prefix)
    service_url = env.get("JUPYTERHUB_SERVICE_URL")
    if service_url:
        parsed = urlparse(service_url)
        if parsed.hostname:
            put("ip", parsed.hostname)
        if parsed.port:
            put("port", parsed.port)
    root = env.get("JUPYTERHUB_ROOT_DIR")
    if root:
        put("root_dir", root)
    # Behind the hub's proxy the public host name is not ours to know, and
    # the proxy sets X-Forwarded-* (https detection for Secure cookies).
    put("allow_remote_access", True)
    put("trust_xheaders", True)
    app.open_browser = False


class HubIdentityProvider(IdentityProvider):
    """Authenticates requests with JupyterHub tokens and OAuth cookies."""

    session_cookie = False

    def __init__(self, hub_auth: HubClient, activity: HubActivityReporter | None = None) -> None:
        # Named `hub_auth` because pages look for it to find the hub (links, OAuth).
        self.hub_auth = hub_auth
        self.activity = activity
        self.credential_cookies = (hub_auth.cookie_name,)
        self.cookie_name = hub_auth.cookie_name

    def login_url(self) -> str | None:
        # Our login page starts the OAuth dance (state cookie + PKCE).
        return "login"

    def logout_url(self) -> str | None:
        return "logout"

    def hub_logout_url(self) -> str:
        """The hub's own logout page (ends the hub session too)."""
        return self.hub_auth.hub_host + self.hub_auth.hub_prefix.rstrip("/") + "/logout"

    async def authenticate(self, request: RequestInfo) -> AuthResult:
        token = header_token(request)
        via = "token"
        if token is None and (request.is_websocket or self.hub_auth.allow_token_in_url):
            token = request.query.get("token") or None
        if token is None:
            token = request.cookies.get(self.hub_auth.cookie_name) or None
            via = "cookie"
        if token is None:
            return AuthResult(error="Authentication required: log in through JupyterHub")
        if len(token) > MAX_TOKEN_LENGTH:
            return AuthResult(error="Invalid token", status=403)
        try:
            model = await self.hub_auth.identify(token)
        except HubUnavailable as e:
            log.error("Cannot check credentials with JupyterHub: %s", e)
            return AuthResult(error="Cannot check credentials with JupyterHub right now; try again", status=503)
        if model is None:
            if via == "cookie":
                return AuthResult(error="Your JupyterHub login has expired; log in again", clear_session=True)
            return AuthResult(error="Invalid or expired JupyterHub token", status=403)
        name = str(model.get("name", ""))
        kind = model.get("kind", "user")
        granted = model.get("scopes") or ()
        if not isinstance(granted, list) or not all(isinstance(s, str) for s in granted):
            granted = []
        if not self.hub_auth.allows(model):
            log.warning("Hub %s %r is not allowed to access this server (missing access scope)", kind, name)
            return AuthResult(error=f"{kind} {name} is not allowed to access this server", status=403)
        return AuthResult(
            user=User(
                username=name,
                name=name,
                display_name=name,
                via=via,
                scopes=frozenset(granted),
            )
        )

    async def check_hub(self, attempts: int = STARTUP_CHECK_ATTEMPTS) -> bool:
        """Ask the hub API for its version, retrying a few times; log the outcome."""
        url = self.hub_auth.api_url + "/"
        delay = 0.5
        error: Exception | None = None
        for attempt in range(1, attempts + 1):
            try:
                version = await self.hub_auth.hub_version()
                log.info("JupyterHub API at %s answers (hub version %s)", url, version)
                return True
            except HubUnavailable as e:
                error = e
                if attempt < attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        log.error(
            "JupyterHub API at %s is unreachable after %d attempts (%s); logins will fail until it answers",
            url,
            attempts,
            error,
        )
        return False

    async def start(self) -> None:
        """Check the hub and start activity reporting, in the background.

        The check must not delay start-up: the hub is waiting for our `/api`.
        """
        self._check_task = asyncio.create_task(self.check_hub(), name="hub-check")
        if self.activity is not None:
            self.activity.start()

    async def stop(self) -> None:
        """Stop background work."""
        task = getattr(self, "_check_task", None)
        if task is not None and not task.done():
            task.cancel()
        if self.activity is not None:
            await self.activity.stop()


def _any_kernel_busy(app: ZasperApp) -> bool:
    registry = app.kernel_registry
    if registry is None:
        return False
    try:
        return any(k.get("execution_state") == "busy" for k in registry.list_models())
    except Exception:  # noqa: BLE001 - the registry may be mid-shutdown; activity is best effort
        return False


def make_hub_provider(app: ZasperApp) -> HubIdentityProvider:
    """The provider for `zasperhub-singleuser`, configured from the hub's environment."""
    from zasperhub.auth.activity import HubActivityReporter

    env = os.environ
    missing = [name for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_CLIENT_ID") if not env.get(name)]
    if missing:
        raise AuthSetupError(f"zasperhub-singleuser must be launched by JupyterHub: {', '.join(missing)} not set")
    # `HubOAuth.cache_max_age` is honoured so configs written for jupyterhub's client keep working.
    cache_seconds = DEFAULT_CACHE_SECONDS
    for section in ("HubClient", "HubOAuth"):
        configured = app.config.get(section, {})
        if "cache_max_age" in configured:
            try:
                cache_seconds = float(configured["cache_max_age"])
            except (TypeError, ValueError):
                raise AuthSetupError(f"{section}.cache_max_age must be a number of seconds") from None
            break
    hub_auth = client_from_environment(app.base_url, cache_seconds)

    activity = None
    activity_url = env.get("JUPYTERHUB_ACTIVITY_URL")
    if activity_url:
        activity = HubActivityReporter(
            activity_url,
            hub_auth.api_token,
            env.get("JUPYTERHUB_SERVER_NAME", ""),
            last_activity=app.last_activity,
            any_kernel_busy=lambda: _any_kernel_busy(app),
            parent=app,
        )
        interval = env.get("JUPYTERHUB_ACTIVITY_INTERVAL")
        if interval and "interval" not in app.config.get("HubActivityReporter", {}):
            try:
                activity.interval = max(1.0, float(interval))
            except ValueError:
                log.warning("Ignoring JUPYTERHUB_ACTIVITY_INTERVAL=%r (not a number)", interval)
    return HubIdentityProvider(hub_auth, activity)
