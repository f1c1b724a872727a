"""Hub mode end to end: real JupyterHub + configurable-http-proxy spawning `zasperhub-singleuser`.

The servers run under a probe that records, on exit, whether jupyterhub or
SQLAlchemy were ever imported (the single-user server must not import them).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import jupyterhub
import orjson
import pytest
import websockets

from tests.support.hub import MODULES_REPORT, HubProcess, probe_singleuser_command

pytestmark = pytest.mark.hub

ALICE = "alice"
PREFIX = f"/user/{ALICE}"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(
        tmp_path_factory.mktemp("hub"),
        spawner_cmd=probe_singleuser_command(),
        spawner_env={"JUPYTERHUB_ACTIVITY_INTERVAL": "1"},
        spawner_args=["--log-level=INFO"],
        admin_users=("admin",),
        # Accept every activity report (the default ignores updates < 30 s apart).
        extra_config="c.JupyterHub.activity_resolution = 0",
    ).start()
    try:
        for name in (ALICE, "bob", "admin", "carol"):
            hub.create_user(name, admin=name == "admin")
        hub.start_server(ALICE)
        yield hub
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def alice_token(hub: HubProcess) -> str:
    return hub.new_token(ALICE)


def oauth_login(hub: HubProcess, client: httpx.Client, user: str, next_path: str = f"{PREFIX}/api/me", prefix: str = PREFIX) -> httpx.Response:
    """Hub form login, then the OAuth redirects of the server at `prefix`."""
    hub.browser_login(client, user)
    return client.get(f"{prefix}/login", params={"next": next_path}, follow_redirects=True)


def test_readiness_probe_and_version_header(hub: HubProcess) -> None:
    r = httpx.get(f"{hub.url}{PREFIX}/api", timeout=10)
    assert r.status_code == 200 and r.json()["version"]
    assert r.headers["x-jupyterhub-version"] == jupyterhub.__version__
    denied = httpx.get(f"{hub.url}{PREFIX}/api/status", timeout=10)
    assert denied.status_code == 401
    assert denied.headers["x-jupyterhub-version"] == jupyterhub.__version__
    assert "JupyterHub" in denied.json()["message"]
    missing = httpx.get(f"{hub.url}{PREFIX}/no/such/page", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["x-jupyterhub-version"] == jupyterhub.__version__


def test_browser_login_through_hub_oauth_with_pkce(hub: HubProcess) -> None:
    with hub.browser() as c:
        r = oauth_login(hub, c, ALICE)
        assert r.status_code == 200, r.text
        assert r.json()["identity"]["username"] == ALICE
        hops = [str(h.url) for h in r.history]
        authorize = next(u for u in hops if "/hub/api/oauth2/authorize" in u)
        query = parse_qs(urlsplit(authorize).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"][0]
        assert query["state"][0]
        assert any(f"{PREFIX}/oauth_callback" in u for u in hops)
        # The token from the OAuth exchange sits in a signed, HttpOnly, Lax cookie.
        callback = next(h for h in r.history if "/oauth_callback" in str(h.url))
        raw = next(h for h in callback.headers.get_list("set-cookie") if h.startswith(f"jupyterhub-user-{ALICE}="))
        flags = [f.strip().lower() for f in raw.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and f"path={PREFIX}/" in flags
        # No credentials left in the final URL.
        assert "code=" not in str(r.url) and "token=" not in str(r.url)

        # Cookie-authenticated writes need the XSRF token.
        assert c.post(f"{PREFIX}/api/contents", json={"type": "directory"}).status_code == 403
        xsrf = c.cookies.get("_xsrf", path=f"{PREFIX}/")
        ok = c.post(f"{PREFIX}/api/contents", json={"type": "directory"}, headers={"X-XSRFToken": xsrf})
        assert ok.status_code == 201, ok.text

        # Logout clears the cookie and hands over to the hub's logout.
        out = c.get(f"{PREFIX}/logout", follow_redirects=False)
        assert out.status_code == 302 and out.headers["location"].endswith("/hub/logout")
        assert c.get(f"{PREFIX}/api/me").status_code == 401


def test_replayed_or_forged_oauth_state_is_refused(hub: HubProcess) -> None:
    with hub.browser() as c:
        r = oauth_login(hub, c, ALICE)
        callback = next(str(h.url) for h in r.history if "/oauth_callback" in str(h.url))
    # Replayed elsewhere (no state cookie): refused, and no session results.
    with hub.browser() as other:
        replay = other.get(callback, follow_redirects=False)
        assert replay.status_code == 403
        assert "oauth state does not match" in replay.text
        assert not [h for h in replay.headers.get_list("set-cookie") if h.startswith("jupyterhub-user-")]
        assert other.get(f"{PREFIX}/api/me").status_code == 401
        missing = other.get(f"{PREFIX}/oauth_callback", params={"code": "x"}, follow_redirects=False)
        assert missing.status_code == 400 and "state" in missing.text


@pytest.mark.parametrize("scheme", ["token", "bearer"])
def test_hub_token_in_authorization_header(hub: HubProcess, alice_token: str, scheme: str) -> None:
    r = httpx.get(f"{hub.url}{PREFIX}/api/me", headers={"Authorization": f"{scheme} {alice_token}"}, timeout=10)
    assert r.status_code == 200 and r.json()["identity"]["username"] == ALICE


def test_other_user_gets_403(hub: HubProcess) -> None:
    bob = hub.new_token("bob")
    r = httpx.get(f"{hub.url}{PREFIX}/api/status", headers={"Authorization": f"token {bob}"}, timeout=10)
    assert r.status_code == 403 and "bob is not allowed" in r.json()["message"]
    with hub.browser() as c:
        r = oauth_login(hub, c, "bob")
        assert r.status_code == 403


def test_admin_without_access_scope_gets_403(hub: HubProcess) -> None:
    token = hub.new_token("admin", scopes=["read:users", "admin:users"])
    r = httpx.get(f"{hub.url}{PREFIX}/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 403 and "admin is not allowed" in r.json()["message"]


@pytest.mark.parametrize("token", ["not-a-hub-token", "x" * 5000])
def test_invalid_tokens_get_403(hub: HubProcess, token: str) -> None:
    r = httpx.get(f"{hub.url}{PREFIX}/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 403 and "token" in r.json()["message"].lower()


def test_expired_hub_token_gets_403(hub: HubProcess) -> None:
    token = hub.new_token(ALICE, expires_in=1)
    time.sleep(2.5)
    r = httpx.get(f"{hub.url}{PREFIX}/api/status", headers={"Authorization": f"token {token}"}, timeout=10)
    assert r.status_code == 403 and "expired" in r.json()["message"]


def test_forged_hub_cookie_is_refused(hub: HubProcess) -> None:
    with hub.browser() as c:
        c.cookies.set(f"jupyterhub-user-{ALICE}", "2|1:0|10:1795000000|22:jupyterhub-user-alice|8:Zm9yZ2Vk|00ff", path=f"{PREFIX}/")
        assert c.get(f"{PREFIX}/api/me").status_code == 401


def test_run_code_on_a_kernel_through_the_proxy_websocket(hub: HubProcess, alice_token: str) -> None:
    headers = {"Authorization": f"token {alice_token}"}
    with httpx.Client(base_url=f"{hub.url}{PREFIX}", headers=headers, timeout=60) as c:
        r = c.post("/api/kernels", json={"name": "python3"})
        assert r.status_code == 201, r.text
        kernel_id = r.json()["id"]
        try:
            ws_url = hub.url.replace("http://", "ws://") + f"{PREFIX}/api/kernels/{kernel_id}/channels"
            output = asyncio.run(_execute(ws_url, headers, "print(6 * 7)"))
            assert output == "42\n"
        finally:
            assert c.delete(f"/api/kernels/{kernel_id}").status_code == 204


async def _execute(url: str, headers: dict[str, str], code: str) -> str:
    session = uuid.uuid4().hex
    msg_id = uuid.uuid4().hex
    message = {
        "header": {
            "msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": ALICE,
            "version": "5.3", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
    }
    text = ""
    async with websockets.connect(f"{url}?session_id={session}", additional_headers=headers, open_timeout=30) as ws:
        await ws.send(orjson.dumps(message).decode())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(ws.recv(), timeout=max(0.1, deadline - time.monotonic()))
            msg = orjson.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                text += msg["content"]["text"]
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return text
    raise AssertionError(f"no idle status within 60 s; output so far {text!r}")


def _parse(ts: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_activity_shows_up_in_the_hub_user_model(hub: HubProcess, alice_token: str) -> None:
    headers = {"Authorization": f"token {alice_token}"}
    with httpx.Client(base_url=f"{hub.url}{PREFIX}", headers=headers, timeout=30) as c:
        assert c.get("/api/contents").status_code == 200  # API use is activity
        ours = _parse(c.get("/api/status").json()["last_activity"])
    deadline = time.monotonic() + 20
    seen = None
    while time.monotonic() < deadline:
        model = hub.user_model(ALICE)
        stamp = model["servers"][""]["last_activity"]
        seen = _parse(stamp) if stamp else None
        if seen is not None and seen >= ours - datetime.timedelta(milliseconds=1):
            break
        time.sleep(0.5)
    assert seen is not None and seen >= ours - datetime.timedelta(milliseconds=1), (seen, ours)
    assert _parse(hub.user_model(ALICE)["last_activity"]) >= ours - datetime.timedelta(milliseconds=1)


def test_hub_check_and_no_tokens_in_server_log(hub: HubProcess, alice_token: str) -> None:
    log = hub.log()
    assert "JupyterHub API at" in log and "answers (hub version" in log
    server_lines = [line for line in log.splitlines() if "zasperhub" in line]
    assert server_lines
    assert not [line for line in server_lines if alice_token in line]


def test_forged_state_with_a_state_cookie_of_its_own_is_refused(hub: HubProcess) -> None:
    with hub.browser() as c:
        hub.browser_login(c, ALICE)
        start = c.get(f"{PREFIX}/login", follow_redirects=False)
        assert start.status_code == 302 and "/hub/api/oauth2/authorize" in start.headers["location"]
        # The browser holds a genuine state cookie, but the callback carries another state.
        r = c.get(f"{PREFIX}/oauth_callback", params={"code": "x", "state": "forged-state"}, follow_redirects=False)
        assert r.status_code == 403 and "oauth state does not match" in r.text
        assert not [h for h in r.headers.get_list("set-cookie") if h.startswith(f"jupyterhub-user-{ALICE}=")]
        assert c.get(f"{PREFIX}/api/me").status_code == 401
        err = c.get(f"{PREFIX}/oauth_callback", params={"error": "access_denied"}, follow_redirects=False)
        assert err.status_code == 400 and "access_denied" in err.text


def test_single_user_server_never_imports_jupyterhub_or_sqlalchemy(hub: HubProcess) -> None:
    carol = "carol"
    hub.start_server(carol)
    report = hub.workdir / "home" / carol / MODULES_REPORT
    report.unlink(missing_ok=True)
    prefix = f"/user/{carol}"
    token = hub.new_token(carol)
    r = httpx.get(f"{hub.url}{prefix}/api/contents", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    with hub.browser() as c:  # the OAuth flow and a cookie-authenticated request
        r = oauth_login(hub, c, carol, next_path=f"{prefix}/api/me", prefix=prefix)
        assert r.status_code == 200 and r.json()["identity"]["username"] == carol
    hub.stop_server(carol)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not report.exists():
        time.sleep(0.2)
    assert report.exists(), hub.log()[-3000:]
    found = json.loads(report.read_text())
    assert found["modules"] > 100  # the probe saw a running server
    assert found["heavy"] == []
