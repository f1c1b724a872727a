"""Test authenticator: a stand-in for GoogleOAuthenticator against the Drive double.

Only the parts of an OAuth authenticator that Drive mode depends on: login
stores `access_token`, `refresh_token` and `token_response` in `auth_state`
(the shape oauthenticator builds), and `refresh_user` does what
oauthenticator's does — keep the token while it works, exchange the refresh
token at the token endpoint when it stops working.  The browser redirect
dance with Google is out of scope (the hub is what is under test).
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from jupyterhub.auth import DummyAuthenticator
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Unicode


class DriveDoubleAuthenticator(DummyAuthenticator):
    """Dummy login plus real OAuth token handling against the Drive double."""

    token_url = Unicode(config=True)
    drive_url = Unicode(config=True)
    client_id = Unicode(config=True)
    client_secret = Unicode(config=True)
    refresh_token = Unicode(config=True)

    async def _exchange(self) -> dict[str, Any]:
        body = urllib.parse.urlencode({
            "grant_type": "refresh_token", "refresh_token": self.refresh_token,
            "client_id": self.client_id, "client_secret": self.client_secret,
        })
        response = await AsyncHTTPClient().fetch(HTTPRequest(self.token_url, method="POST", body=body))
        return json.loads(response.body)

    async def _works(self, token: str) -> bool:
        try:
            await AsyncHTTPClient().fetch(f"{self.drive_url}drive/v3/files/root", headers={"Authorization": f"Bearer {token}"})
        except HTTPClientError as e:
            if 400 <= e.code < 500:
                return False
            raise
        return True

    def _state(self, token_response: dict[str, Any]) -> dict[str, Any]:
        return {"access_token": token_response["access_token"], "refresh_token": self.refresh_token,
                "token_response": token_response}

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        name = await super().authenticate(handler, data)
        if not name:
            return None
        return {"name": name, "auth_state": self._state(await self._exchange())}

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        state = await user.get_auth_state()
        if not state:
            return False
        if await self._works(state["access_token"]):
            return True
        self.log.info("Refreshing Drive token for %s", user.name)
        return {"name": user.name, "auth_state": self._state(await self._exchange())}
