"""Token auth and hardening against the real server (issue 2's auth part, issue 4's checks)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.support.server import ServerProcess

WRONG = "wrong-token-that-must-not-be-logged"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("tokroot")
    srv = ServerProcess(root, "--log-level=DEBUG").start()
    yield srv
    srv.stop()


def anon(server: ServerProcess, **kwargs: object) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30, **kwargs)


@pytest.mark.parametrize("scheme", ["token", "Token", "bearer", "Bearer"])
def test_authorization_header_schemes(server: ServerProcess, scheme: str) -> None:
    with anon(server) as c:
        r = c.get("/api/me", headers={"Authorization": f"{scheme} {server.token}"})
        assert r.status_code == 200 and r.json()["identity"]["username"]
        assert not r.headers.get_list("set-cookie")  # header auth starts no session


@pytest.mark.parametrize(
    "headers,status,message",
    [
        ({}, 401, "token"),
        ({"Authorization": "token " + WRONG}, 403, "Invalid token"),
        ({"Authorization": "token " + "x" * 5000}, 403, "Invalid token"),
        ({"Authorization": "Basic abc"}, 401, "token"),
        ({"Authorization": "token"}, 401, "token"),
    ],
)
def test_bad_tokens_get_json_errors(server: ServerProcess, headers: dict[str, str], status: int, message: str) -> None:
    with anon(server) as c:
        r = c.get("/api/status", headers=headers)
        assert r.status_code == status
        assert message in r.json()["message"]
        assert not r.headers.get_list("set-cookie")


def test_unauthenticated_version_endpoint(server: ServerProcess) -> None:
    with anon(server) as c:
        assert c.get("/api").json()["version"]


def test_query_token_starts_a_session_then_xsrf_guards_writes(server: ServerProcess) -> None:
    with anon(server) as c:
        r = c.get("/api/status", params={"token": server.token})
        assert r.status_code == 200
        name = f"zasperhub-session-{server.port}"
        assert c.cookies.get(name)
        assert c.get("/api/me").status_code == 200  # cookie alone now
        # A cookie-authenticated write without the XSRF token is refused and changes nothing.
        r = c.post("/api/contents", json={"type": "directory"})
        assert r.status_code == 403
        assert not list(Path(server.root_dir).iterdir())
        r = c.post("/api/shutdown")
        assert r.status_code == 403
        assert c.get("/api").status_code == 200  # still running
        # A wrong X-XSRFToken is refused too.
        r = c.post("/api/contents", json={"type": "directory"}, headers={"X-XSRFToken": "2|aa|bb|1"})
        assert r.status_code == 403
        # With the token from the _xsrf cookie the write goes through.
        c.get("/login")  # any page sets the _xsrf cookie
        xsrf = c.cookies.get("_xsrf")
        r = c.post("/api/contents", json={"type": "directory"}, headers={"X-XSRFToken": xsrf})
        assert r.status_code == 201, r.text


def test_token_header_writes_need_no_xsrf(server: ServerProcess) -> None:
    with anon(server, headers=server.headers) as c:
        r = c.post("/api/contents", json={"type": "file", "ext": ".txt"})
        assert r.status_code == 201, r.text
        assert c.delete("/api/contents/" + r.json()["path"]).status_code == 204


def test_query_token_on_a_page_is_removed_from_the_url(server: ServerProcess) -> None:
    with anon(server) as c:
        r = c.get("/kernelspecs/python3/logo-64x64.png", params={"token": server.token, "v": "1"})
        assert r.status_code == 302
        assert r.headers["location"] == "/kernelspecs/python3/logo-64x64.png?v=1"
        assert c.get(r.headers["location"]).status_code in (200, 404)  # served by cookie now


def test_token_login_form(server: ServerProcess) -> None:
    from tests.auth.helpers import XSRF_FIELD

    with anon(server) as c:
        page = c.get("/login", params={"next": "/api/me"})
        xsrf = XSRF_FIELD.search(page.text).group(1)
        bad = c.post("/login", data={"_xsrf": xsrf, "token": WRONG, "next": "/api/me"})
        assert bad.status_code == 401 and "Invalid token" in bad.text
        ok = c.post("/login", data={"_xsrf": xsrf, "token": server.token, "next": "/api/me"})
        assert ok.status_code == 302 and ok.headers["location"] == "/api/me"
        assert c.get("/api/me").status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "10.0.0.1"])
def test_dns_rebinding_host_is_refused(server: ServerProcess, host: str) -> None:
    with anon(server, headers=server.headers) as c:
        r = c.get("/api/status", headers={"Host": host})
        assert r.status_code == 403 and "Host" in r.json()["message"]


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_hosts_are_allowed(server: ServerProcess, host: str) -> None:
    with anon(server, headers=server.headers) as c:
        assert c.get("/api/status", headers={"Host": f"{host}:{server.port}"}).status_code == 200


def test_cross_origin_api_request_is_refused_and_cors_closed(server: ServerProcess) -> None:
    with anon(server, headers=server.headers) as c:
        r = c.get("/api/status", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        same = c.get("/api/status", headers={"Origin": server.url})
        assert same.status_code == 200
        assert "access-control-allow-origin" not in same.headers
        pre = c.options("/api/status", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE"})
        assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers


def test_cors_opens_only_for_the_configured_origin(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    srv = ServerProcess(root, "--ZasperApp.allow_origin=http://app.example").start()
    try:
        with anon(srv, headers=srv.headers) as c:
            pre = c.options("/api/kernels", headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
            assert pre.status_code == 204
            assert pre.headers["access-control-allow-origin"] == "http://app.example"
            assert "Authorization" in pre.headers["access-control-allow-headers"]
            r = c.get("/api/status", headers={"Origin": "http://app.example"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.example"
            assert c.get("/api/status", headers={"Origin": "http://other.example"}).status_code == 403
    finally:
        srv.stop()


def test_websocket_from_foreign_origin_is_refused(server: ServerProcess) -> None:
    async def attempt(origin: str) -> int:
        url = f"{server.ws_url}/api/kernels/00000000-0000-0000-0000-000000000000/channels?token={server.token}"
        try:
            async with websockets.connect(url, origin=origin, open_timeout=10):
                return 101
        except websockets.exceptions.InvalidStatus as e:
            return e.response.status_code

    assert asyncio.run(attempt("http://evil.example")) == 403
    # Same origin passes the guard and reaches the handler (no such kernel).
    assert asyncio.run(attempt(server.url)) == 404


def test_websocket_needs_credentials(server: ServerProcess) -> None:
    async def attempt() -> int:
        url = f"{server.ws_url}/api/kernels/00000000-0000-0000-0000-000000000000/channels"
        try:
            async with websockets.connect(url, open_timeout=10):
                return 101
        except websockets.exceptions.InvalidStatus as e:
            return e.response.status_code

    assert asyncio.run(attempt()) == 401


def test_security_headers_everywhere(server: ServerProcess) -> None:
    with anon(server) as c:
        for path in ("/api", "/api/status", "/login", "/api/contents/nope"):
            r = c.get(path, headers=server.headers)
            assert r.headers["x-content-type-options"] == "nosniff", path
            assert "frame-ancestors 'self'" in r.headers["content-security-policy"], path
            assert "x-jupyterhub-version" not in r.headers  # hub mode only


def test_token_never_logged(server: ServerProcess) -> None:
    with anon(server) as c:
        c.get("/api/status", params={"token": WRONG})
        c.get("/api/status", params={"token": server.token})
        c.get("/api/nonexistent", params={"token": server.token})
        c.get("/api/status", headers={"Host": "evil.example"}, params={"token": server.token})
        c.get("/api/status", headers={"Authorization": "token " + WRONG})
    log = server.log()
    assert "/api/status" in log  # the requests were logged ...
    assert server.token not in log  # ... without the token
    assert WRONG not in log
    assert "?token=..." in log  # the user-chosen token is not printed at start-up either


def test_generated_token_is_shown_once_in_the_start_url(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    srv = ServerProcess(root)
    srv.command = lambda: [a for a in ServerProcess.command(srv) if not a.startswith("--token=")]  # type: ignore[method-assign]
    env_token = {k: v for k, v in srv.env.items() if k in ("JUPYTER_TOKEN", "ZASPERHUB_TOKEN")}
    for k in env_token:
        srv.env.pop(k)
    srv.start()
    try:
        line = next(l for l in srv.log().splitlines() if "?token=" in l)
        token = line.split("?token=", 1)[1].strip()
        assert len(token) == 48
        with anon(srv) as c:
            assert c.get("/api/status", headers={"Authorization": f"token {token}"}).status_code == 200
    finally:
        srv.stop()


def test_unknown_url_is_404_with_security_headers(server: ServerProcess) -> None:
    with anon(server) as c:
        r = c.get("/no/such/page")
        assert r.status_code == 404
        assert r.headers["x-content-type-options"] == "nosniff"
        assert c.get("/no/such/page", headers={"Host": "evil.example"}).status_code == 403


def test_session_cookie_is_secure_behind_an_https_proxy(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    srv = ServerProcess(root, "--ZasperApp.trust_xheaders=True").start()
    try:
        with anon(srv) as c:
            r = c.get("/api/status", params={"token": srv.token}, headers={"X-Forwarded-Proto": "https"})
            (raw,) = [h for h in r.headers.get_list("set-cookie") if h.startswith("zasperhub-session-")]
            assert "secure" in [f.strip().lower() for f in raw.split(";")]
            plain = c.get("/api/status", params={"token": srv.token})
            (raw,) = [h for h in plain.headers.get_list("set-cookie") if h.startswith("zasperhub-session-")]
            assert "secure" not in [f.strip().lower() for f in raw.split(";")]
    finally:
        srv.stop()


def test_oauth_callback_exists_only_in_hub_mode(server: ServerProcess) -> None:
    with anon(server) as c:
        r = c.get("/oauth_callback", params={"code": "x", "state": "y"})
        assert r.status_code == 404
        assert "Not in JupyterHub mode" in r.text
