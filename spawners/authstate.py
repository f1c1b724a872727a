"""Google Drive per user: OAuth tokens from the hub's `auth_state`.

Hub side (`drive_environment`): with oauthenticator's `GoogleOAuthenticator`
and `enable_auth_state`, the user's access token is handed to their server in
its environment at start.  The refresh token and the OAuth client secret stay
in the hub.

Server side (`refresh_from_hub`): Google access tokens live an hour.
Instead of failing then, the Drive backend's `credentials_refresher` hook asks
the hub for the user's current `auth_state` (`GET /hub/api/users/{name}` with
the server's own API token, which needs the `admin:auth_state!user` scope —
`zasperhub hub` grants it to the `server` role).  Every authenticated hub
request runs `Authenticator.refresh_user` at most every `auth_refresh_age`
seconds, and oauthenticator's `refresh_user` exchanges the refresh token when
the access token stops working, so the hub returns a usable token.

The spawner wires the hook with `--config=<DRIVE_CONFIG_FILE>`, a small
config file shipped with this package (a callable cannot travel on argv).
"""

from __future__ import annotations

import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

#: Environment variable the Drive backend reads its initial access token from.
ACCESS_TOKEN_ENV = "ZASPERHUB_GDRIVE_ACCESS_TOKEN"
#: Scope the server's token needs to read its own user's auth_state.
AUTH_STATE_SCOPE = "admin:auth_state!user"
#: The single-user config file that installs `refresh_from_hub` as the hook.
DRIVE_CONFIG_FILE = str(Path(__file__).with_name("drive_singleuser_config.py"))
#: When the hub hands back the token we already had (its own refresh is not
#: due yet), ask again after this many seconds rather than trust it for an hour.
RETRY_STALE_SECONDS = 30.0


class MissingAuthState(RuntimeError):
    """The user has no OAuth tokens (auth_state disabled or a non-OAuth login)."""


def drive_environment(auth_state: dict[str, Any] | None, username: str) -> dict[str, str]:
    """Secret environment for a Drive-backed server of `username`."""
    if not auth_state or not auth_state.get("access_token"):
        raise MissingAuthState(
            f"No Google tokens for {username}: Drive storage needs an OAuth authenticator "
            "(GoogleOAuthenticator) with enable_auth_state = True, and the user must log in again."
        )
    return {ACCESS_TOKEN_ENV: auth_state["access_token"]}


def fetch_auth_state(api_url: str, api_token: str, username: str, timeout: float = 20.0) -> dict[str, Any]:
    """The user's auth_state from the hub (blocking; the hub refreshes it first if due)."""
    url = f"{api_url.rstrip('/')}/users/{urllib.parse.quote(username, safe='')}"
    request = urllib.request.Request(url, headers={"Authorization": f"token {api_token}", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        model = json.loads(response.read())
    auth_state = model.get("auth_state")
    if not auth_state or not auth_state.get("access_token"):
        raise MissingAuthState(
            f"The hub returned no Google token for {username}: the server's token needs the {AUTH_STATE_SCOPE!r} scope "
            "and the authenticator needs enable_auth_state"
        )
    return auth_state


class HubTokenRefresher:
    """A `DriveBackend.credentials_refresher`: the current access token, from the hub.

    Returns `{"access_token": …, "expires_in": …}`.  Reads JupyterHub's
    `JUPYTERHUB_API_URL`, `JUPYTERHUB_API_TOKEN` and `JUPYTERHUB_USER`.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.api_url = env.get("JUPYTERHUB_API_URL", "")
        self.api_token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.user = env.get("JUPYTERHUB_USER", "")
        self._last = env.get(ACCESS_TOKEN_ENV, "")
        self._lock = threading.Lock()

    def __call__(self) -> dict[str, Any]:
        from google.auth.exceptions import RefreshError

        if not (self.api_url and self.api_token and self.user):
            raise RefreshError("Not running under JupyterHub: cannot refresh the Google token through the hub")
        try:
            state = fetch_auth_state(self.api_url, self.api_token, self.user)
        except (OSError, ValueError, MissingAuthState) as e:
            detail = f"HTTP {e.code}" if isinstance(e, urllib.error.HTTPError) else str(e)
            raise RefreshError(f"Could not refresh the Google token through the hub: {detail}") from e
        token = state["access_token"]
        with self._lock:
            stale = token == self._last
            self._last = token
        if stale:
            return {"access_token": token, "expires_in": RETRY_STALE_SECONDS}
        response = state.get("token_response") or {}
        lifetime = response.get("expires_in")
        result: dict[str, Any] = {"access_token": token}
        if lifetime is not None:
            # The hub may have fetched it a while ago; stay on the safe side.
            result["expires_in"] = max(RETRY_STALE_SECONDS, float(lifetime) / 2)
        return result


def refresh_from_hub() -> dict[str, Any]:
    """Module-level hook (one refresher per process, created on first use)."""
    global _REFRESHER
    if _REFRESHER is None:
        _REFRESHER = HubTokenRefresher()
    return _REFRESHER()


_REFRESHER: HubTokenRefresher | None = None
