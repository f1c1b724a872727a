"""Our JupyterHub client against a small hub-API double on loopback.

The double answers the two endpoints the client uses (`GET /hub/api/user`,
`POST /hub/api/oauth2/token`) with the status codes and bodies JupyterHub
sends, and can be switched into failure modes (5xx, non-JSON, down) that a
real hub only shows under faults.  The real hub runs in test_hub.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tornado import httpserver, web
from zasperhub.auth.base import RequestInfo
from zasperhub.auth.hub import HubIdentityProvider
from zasperhub.auth.hub_client import (
    HubClient,
    HubUnavailable,
    OAuthError,
    access_granted,
    parse_scopes,
    scope_covers,
)

from tests.support.ports import free_port

ALICE_SCOPE = "access:servers!server=alice/"


class FakeHub:
    """State shared by the double's handlers."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (token, PKCE challenge)
        self.mode = "ok"  # ok | error500 | garbage | slow
        self.user_requests = 0


class UserHandler(web.RequestHandler):
    async def get(self) -> None:
        hub: FakeHub = self.settings["hub"]
        hub.user_requests += 1
        if hub.mode == "slow":
            await asyncio.sleep(0.2)
        if hub.mode == "error500":
            raise web.HTTPError(500)
        if hub.mode == "garbage":
            self.finish("<html>proxy error</html>")
            return
        token = self.request.headers.get("Authorization", "").partition(" ")[2]
        model = hub.tokens.get(token)
        if model is None:
            raise web.HTTPError(403)
        self.finish(model)


class TokenHandler(web.RequestHandler):
    def post(self) -> None:
        hub: FakeHub = self.settings["hub"]
        if hub.mode == "error500":
            raise web.HTTPError(500)
        form = {k: v[0].decode() for k, v in self.request.body_arguments.items()}
        issued = hub.codes.pop(form.get("code", ""), None)
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if issued is None or issued[1] != challenge or form.get("client_secret") != "api-token":
            self.set_status(400)
            self.finish({"error": "invalid_grant", "error_description": "Invalid code"})
            return
        self.finish({"access_token": issued[0], "token_type": "Bearer"})


def env_for(port: int, **extra: str) -> dict[str, str]:
    return {
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{port}/hub/api",
        "JUPYTERHUB_API_TOKEN": "api-token",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-alice",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps([ALICE_SCOPE, "access:servers!user=alice"]),
        **extra,
    }


def with_hub(body: Callable[[FakeHub, HubClient], Awaitable[None]], **client_kwargs: Any) -> None:
    """Run `body` with a fresh double listening and a client pointed at it."""

    async def main() -> None:
        hub = FakeHub()
        app = web.Application([(r"/hub/api/user", UserHandler), (r"/hub/api/oauth2/token", TokenHandler)], hub=hub)
        port = free_port()
        server = httpserver.HTTPServer(app)
        server.listen(port, "127.0.0.1")
        try:
            await body(hub, HubClient(env_for(port), "/user/alice/", **client_kwargs))
        finally:
            server.stop()

    asyncio.run(main())


# -- scopes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("granted", "required", "ok"),
    [
        ("access:servers!server=alice/", "access:servers!server=alice/", True),
        ("access:servers", "access:servers!server=alice/", True),
        ("access:servers!user=alice", "access:servers!server=alice/", True),
        ("access:servers!user=alice", "access:servers!server=alice/gpu", True),
        ("access:servers!user=bob", "access:servers!server=alice/", False),
        ("access:servers!server=alice/gpu", "access:servers!server=alice/", False),
        ("access:servers!server=alice/", "access:servers!user=alice", False),
        ("read:users", "access:servers!server=alice/", False),
        ("access:servers!group=team", "access:servers!server=alice/", False),
        ("access:services", "access:servers!server=alice/", False),
    ],
)
def test_scope_filters(granted: str, required: str, ok: bool) -> None:
    assert scope_covers(granted, required) is ok


def test_access_needs_any_of_the_required_scopes() -> None:
    required = {ALICE_SCOPE, "access:servers!user=alice"}
    assert access_granted(required, ["read:users", "access:servers!user=alice"])
    assert not access_granted(required, [])
    assert not access_granted(set(), ["access:servers"])  # nothing required → nobody (fail closed)


def test_scopes_from_environment() -> None:
    assert parse_scopes({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": '["a", "b"]'}) == {"a", "b"}
    assert parse_scopes({"JUPYTERHUB_OAUTH_SCOPES": '["old"]'}) == {"old"}
    # Malformed lists fall back to this user's server, never to "everyone".
    fallback = parse_scopes({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": "not json", "JUPYTERHUB_USER": "al"})
    assert fallback == {"access:servers!server=al/", "access:servers!user=al"}
    assert parse_scopes({"JUPYTERHUB_OAUTH_ACCESS_SCOPES": '{"a": 1}'}) == set()


def test_hub_conventions_for_names_and_urls() -> None:
    client = HubClient(env_for(1, JUPYTERHUB_BASE_URL="/jh/", JUPYTERHUB_HOST="https://hub.example"), "/jh/user/alice")
    assert client.cookie_name == "jupyterhub-user-alice"
    assert client.state_cookie_name == "jupyterhub-user-alice-oauth-state"
    assert client.cookie_path == "/jh/user/alice/"
    assert client.redirect_uri == "/jh/user/alice/oauth_callback"
    assert client.authorize_url == "https://hub.example/jh/hub/api/oauth2/authorize"
    assert client.token_url == "http://127.0.0.1:1/hub/api/oauth2/token"
    hosted = HubClient(env_for(1, JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED="1"), "/user/alice/")
    assert hosted.cookie_name == "__Host-jupyterhub-user-alice" and hosted.cookie_path == "/"


# -- token → identity ---------------------------------------------------------------
def test_identity_cached_and_refusals_are_none() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        hub.tokens["good"] = {"name": "alice", "kind": "user", "scopes": [ALICE_SCOPE]}
        assert (await client.identify("good"))["name"] == "alice"
        assert (await client.identify("good"))["name"] == "alice"
        assert hub.user_requests == 1
        assert await client.identify("unknown-or-expired") is None
        assert await client.identify("unknown-or-expired") is None
        assert hub.user_requests == 2  # refusals are cached too: floods do not reach the hub
        assert await client.identify("good", use_cache=False) is not None
        assert hub.user_requests == 3

    with_hub(body)


def test_cache_expires_and_is_bounded() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        hub.tokens["good"] = {"name": "alice", "scopes": [ALICE_SCOPE]}
        await client.identify("good")
        await asyncio.sleep(0.25)
        await client.identify("good")
        assert hub.user_requests == 2  # expired after 0.2 s
        for i in range(20):
            await client.identify(f"t{i}")
        assert len(client._identities) == 8

    with_hub(body, cache_seconds=0.2, cache_entries=8)


def test_concurrent_checks_of_one_token_share_one_request() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        hub.tokens["good"] = {"name": "alice", "scopes": [ALICE_SCOPE]}
        hub.mode = "slow"
        models = await asyncio.gather(*(client.identify("good") for _ in range(10)))
        assert all(m["name"] == "alice" for m in models)
        assert hub.user_requests == 1

    with_hub(body)


@pytest.mark.parametrize("mode", ["error500", "garbage"])
def test_hub_faults_raise_unavailable_and_are_not_cached(mode: str) -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        hub.tokens["good"] = {"name": "alice", "scopes": [ALICE_SCOPE]}
        hub.mode = mode
        with pytest.raises(HubUnavailable):
            await client.identify("good")
        hub.mode = "ok"
        assert (await client.identify("good"))["name"] == "alice"

    with_hub(body)


def test_hub_down_raises_unavailable_quickly() -> None:
    async def main() -> None:
        client = HubClient(env_for(free_port()), "/user/alice/")
        start = time.monotonic()
        with pytest.raises(HubUnavailable, match="cannot reach"):
            await client.identify("good")
        assert time.monotonic() - start < 5

    asyncio.run(main())


def request_with(token: str) -> RequestInfo:
    return RequestInfo(method="GET", path="/user/alice/api/status", headers={"Authorization": f"token {token}"}, query={}, cookies={})


def test_provider_answers_for_each_failure() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        provider = HubIdentityProvider(client)
        hub.tokens["alice"] = {"name": "alice", "kind": "user", "scopes": [ALICE_SCOPE]}
        hub.tokens["bob"] = {"name": "bob", "kind": "user", "scopes": ["access:servers!server=bob/"]}
        hub.tokens["admin"] = {"name": "admin", "kind": "user", "scopes": ["admin:users", "read:users"]}
        hub.tokens["service"] = {"name": "culler", "kind": "service", "scopes": ["access:servers"]}
        hub.tokens["odd"] = {"name": "alice", "scopes": "access:servers"}  # not a list: no access
        ok = await provider.authenticate(request_with("alice"))
        assert ok.user is not None and ok.user.username == "alice" and ALICE_SCOPE in ok.user.scopes
        for token, who in (("bob", "user bob"), ("admin", "user admin"), ("odd", "user alice")):
            denied = await provider.authenticate(request_with(token))
            assert denied.user is None and denied.status == 403 and f"{who} is not allowed" in (denied.error or "")
        assert (await provider.authenticate(request_with("service"))).user is not None
        bad = await provider.authenticate(request_with("nope"))
        assert bad.status == 403 and "expired" in (bad.error or "")
        hub.mode = "error500"
        down = await provider.authenticate(request_with("fresh-token"))
        assert down.user is None and down.status == 503 and "JupyterHub" in (down.error or "")

    with_hub(body)


# -- OAuth --------------------------------------------------------------------------
def test_authorization_code_flow_with_pkce() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        url, state, cookie = client.begin_login("/user/alice/tree", state_cookie_taken=False)
        assert cookie == "jupyterhub-user-alice-oauth-state"
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["client_id"] == "jupyterhub-user-alice" and query["response_type"] == "code"
        assert query["state"] == state and query["code_challenge_method"] == "S256"
        assert query["redirect_uri"] == "/user/alice/oauth_callback"
        hub.codes["c1"] = ("user-token", query["code_challenge"])
        pending = client.take_login(state)
        assert pending.next_url == "/user/alice/tree"
        assert await client.exchange_code("c1", pending.code_verifier) == "user-token"
        # A state is good for one callback only.
        with pytest.raises(OAuthError) as replay:
            client.take_login(state)
        assert replay.value.status == 403

    with_hub(body)


def test_code_exchange_refusals() -> None:
    async def body(hub: FakeHub, client: HubClient) -> None:
        _, state, _ = client.begin_login("/", False)
        pending = client.take_login(state)
        hub.codes["c2"] = ("t", "some-other-challenge")
        with pytest.raises(OAuthError) as wrong_verifier:
            await client.exchange_code("c2", pending.code_verifier)
        assert wrong_verifier.value.status == 403 and "Invalid code" in wrong_verifier.value.message
        hub.mode = "error500"
        with pytest.raises(OAuthError) as outage:
            await client.exchange_code("c3", pending.code_verifier)
        assert outage.value.status == 503

    with_hub(body)


def test_concurrent_logins_get_their_own_state_cookie_and_pending_logins_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from zasperhub.auth import hub_client

    client = HubClient(env_for(1), "/user/alice/")
    _, first, _ = client.begin_login("/a", False)
    _, second, cookie = client.begin_login("/b", True)
    assert cookie.startswith("jupyterhub-user-alice-oauth-state-") and client.pending_cookie_name(second) == cookie
    assert client.pending_cookie_name("forged") == client.state_cookie_name
    monkeypatch.setattr(hub_client, "MAX_PENDING_STATES", 5)
    for _ in range(10):
        client.begin_login("/", False)
    assert len(client._pending) == 5
    with pytest.raises(OAuthError):
        client.take_login(first)  # evicted: the oldest login must start again


def test_expired_login_state_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    client = HubClient(env_for(1), "/user/alice/")
    _, state, _ = client.begin_login("/", False)
    later = time.monotonic() + 601
    monkeypatch.setattr(time, "monotonic", lambda: later)
    with pytest.raises(OAuthError, match="expired"):
        client.take_login(state)
