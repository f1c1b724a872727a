"""The lean path for `/api/status` and `/api` (platform/web/probe.py).

Two halves: which requests it takes (anything unusual, and anything that
would be refused, must go to the handler path), checked on the router with
real tornado request objects and the real identity providers; and that its
answers are the handler path's, byte for byte where it matters, checked
against a real server.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from tornado import httputil

from tests.support.server import ServerProcess
from zasperhub.auth.password import PasswordIdentityProvider
from zasperhub.auth.token import TokenIdentityProvider
from zasperhub.platform.web import routes
from zasperhub.platform.web.probe import Application, ProbeDelegate

TOKEN = "probe-token-0123456789"


class _Registry:
    def counts(self) -> tuple[int, int]:
        return 3, 5


def make_app(provider: Any, base_url: str = "/", **settings: Any) -> Application:
    # The router needs only what the delegate reads: the provider for the
    # credentials, and the model's sources when it answers.
    zasper = SimpleNamespace(identity_provider=provider, kernel_registry=_Registry())
    return Application(routes.collect_handlers(base_url), base_url=base_url, zasper=zasper, compress_response=True, **settings)


def request(path: str, method: str = "GET", host: str = "127.0.0.1:8888", **headers: str) -> httputil.HTTPServerRequest:
    h = httputil.HTTPHeaders({"Host": host})
    for name, value in headers.items():
        h[name.replace("_", "-")] = value
    return httputil.HTTPServerRequest(start_line=httputil.RequestStartLine(method, path, "HTTP/1.1"), headers=h)


AUTH = f"token {TOKEN}"


@pytest.mark.parametrize(
    "path,headers",
    [
        ("/api/status", {"Authorization": AUTH}),
        ("/api/status", {"Authorization": f"Bearer {TOKEN}"}),
        ("/api", {}),
        ("/api/", {}),
        ("/api", {"Authorization": "token wrong"}),  # /api needs no user, like VersionHandler
    ],
)
def test_plain_polls_take_the_lean_path(path: str, headers: dict[str, str]) -> None:
    app = make_app(TokenIdentityProvider(TOKEN))
    assert isinstance(app.find_handler(request(path, **headers)), ProbeDelegate)


@pytest.mark.parametrize(
    "uri,method,host,headers",
    [
        ("/api/status", "GET", "127.0.0.1", {}),  # no credentials: the handler answers 401
        ("/api/status", "GET", "127.0.0.1", {"Authorization": "token wrong"}),  # 403
        ("/api/status", "GET", "127.0.0.1", {"Authorization": "Basic abc"}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": "token " + "x" * 5000}),
        ("/api/status?token=" + TOKEN, "GET", "127.0.0.1", {}),  # starts a session cookie
        ("/api/status", "GET", "evil.example", {"Authorization": AUTH}),  # DNS rebinding guard
        ("/api", "GET", "evil.example", {}),
        ("/api/status", "POST", "127.0.0.1", {"Authorization": AUTH}),
        ("/api/status", "HEAD", "127.0.0.1", {"Authorization": AUTH}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": AUTH, "Origin": "http://evil.example"}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": AUTH, "Cookie": "a=b"}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": AUTH, "If-None-Match": '"x"'}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": AUTH, "Upgrade": "websocket"}),
        ("/api/status", "GET", "127.0.0.1", {"Authorization": AUTH, "Content-Length": "2"}),
        ("/api/status/", "GET", "127.0.0.1", {"Authorization": AUTH}),
        ("/api/me", "GET", "127.0.0.1", {"Authorization": AUTH}),
    ],
)
def test_everything_else_takes_the_handler_path(uri: str, method: str, host: str, headers: dict[str, str]) -> None:
    app = make_app(TokenIdentityProvider(TOKEN))
    assert not isinstance(app.find_handler(request(uri, method=method, host=host, **headers)), ProbeDelegate)


def test_base_url_and_remote_access() -> None:
    app = make_app(TokenIdentityProvider(TOKEN), base_url="/user/ada/")
    assert isinstance(app.find_handler(request("/user/ada/api/status", Authorization=AUTH)), ProbeDelegate)
    assert not isinstance(app.find_handler(request("/api/status", Authorization=AUTH)), ProbeDelegate)
    remote = make_app(TokenIdentityProvider(TOKEN), allow_remote_access=True)
    assert isinstance(remote.find_handler(request("/api/status", host="nb.example.org", Authorization=AUTH)), ProbeDelegate)
    named = make_app(TokenIdentityProvider(TOKEN), local_hostnames=("nb.internal",))
    assert isinstance(named.find_handler(request("/api/status", host="nb.internal:80", Authorization=AUTH)), ProbeDelegate)


def test_providers_decide_from_headers_only() -> None:
    # An empty token in token mode means no authentication at all ...
    assert isinstance(make_app(TokenIdentityProvider("")).find_handler(request("/api/status")), ProbeDelegate)
    # ... but never in password mode, where an empty token means "no token login".
    password = PasswordIdentityProvider(store=None, token="")  # type: ignore[arg-type]
    assert password.header_user(httputil.HTTPHeaders({"Authorization": "token "})) is None
    assert not isinstance(make_app(password).find_handler(request("/api/status", Authorization="token x")), ProbeDelegate)
    with_token = PasswordIdentityProvider(store=None, token=TOKEN)  # type: ignore[arg-type]
    user = with_token.header_user(httputil.HTTPHeaders({"Authorization": AUTH}))
    assert user is not None and user.via == "token"


# -- against a real server ---------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("probe"), "--log-level=DEBUG", token=TOKEN).start()
    yield srv
    srv.stop()


#: Headers whose values differ between two responses by design.
VARYING = {"date", "etag"}


def _compare(lean: httpx.Response, full: httpx.Response) -> None:
    assert lean.status_code == full.status_code == 200
    assert set(lean.headers) == set(full.headers)
    for name in set(full.headers) - VARYING - {"content-length"}:
        assert lean.headers[name] == full.headers[name], name
    assert lean.headers["etag"] == '"%s"' % hashlib.sha1(lean.content).hexdigest()


def test_status_answers_match_the_handler(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}, timeout=30) as c:
        lean = c.get("/api/status")
        full = c.get("/api/status", params={"x": "1"})  # any query string takes the handler path
        _compare(lean, full)
        a, b = lean.json(), full.json()
        assert set(a) == set(b) == {"started", "last_activity", "kernels", "connections"}
        assert a["started"] == b["started"] and (a["kernels"], a["connections"]) == (b["kernels"], b["connections"]) == (0, 0)


def test_version_answers_match_the_handler(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        lean, full = c.get("/api"), c.get("/api", params={"x": "1"})
        _compare(lean, full)
        assert lean.json() == full.json()
        assert lean.headers["etag"] == full.headers["etag"]  # same body, same ETag


def test_polls_count_the_running_kernels(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": AUTH}, timeout=60) as c:
        kernel = c.post("/api/kernels", json={"name": "python3"}).json()
        try:
            assert c.get("/api/status").json()["kernels"] == 1
            assert c.get("/api/status", params={"x": "1"}).json()["kernels"] == 1
        finally:
            c.delete(f"/api/kernels/{kernel['id']}")
        assert c.get("/api/status").json()["kernels"] == 0


def _raw(server: ServerProcess, data: bytes, expect_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not expect_close and b"".join(chunks).count(b'"connections"') == 2:
                    break
        except TimeoutError:
            pytest.fail("the server neither answered nor closed")
        return b"".join(chunks)


def test_keep_alive_pipelining_and_http10(server: ServerProcess) -> None:
    one = f"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n\r\n".encode()
    # Two pipelined requests on one connection: two complete answers, in order.
    both = _raw(server, one + one, expect_close=False)
    assert both.count(b"HTTP/1.1 200 OK") == 2
    # HTTP/1.0 without keep-alive: one answer, then the server closes.
    old = f"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n\r\n".encode()
    answer = _raw(server, old, expect_close=True)
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"}")


def test_refusals_are_unchanged(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/status").status_code == 401
        assert c.get("/api/status", headers={"Authorization": "token nope"}).json()["message"] == "Invalid token"
        assert c.get("/api/status", headers={"Authorization": AUTH, "Host": "evil.example"}).status_code == 403
        assert c.get("/api", headers={"Host": "evil.example"}).status_code == 403
    assert "nope" not in server.log()
