"""The server side of the UI: the app shell, its auth behaviour, and the
static assets (caching, pre-compressed gzip, no path escapes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess

DIST = Path(__file__).resolve().parents[2] / "platform" / "ui" / "dist"


@pytest.fixture(scope="module")
def srv(module_server: ServerProcess) -> ServerProcess:
    return module_server


def browser(srv: ServerProcess) -> httpx.Client:
    """A cookie-keeping client without the token header (like a browser)."""
    return httpx.Client(base_url=srv.url, timeout=20, follow_redirects=False)


def login(client: httpx.Client, srv: ServerProcess) -> None:
    r = client.get(f"/?token={srv.token}")
    assert r.status_code == 302  # the token is dropped from the URL
    assert "token" not in r.headers["Location"]


def page_config(html: str) -> dict:
    m = re.search(r'<script id="zasper-config" type="application/json">(.*?)</script>', html, re.S)
    assert m, html[:500]
    return json.loads(m.group(1))


def test_unauthenticated_browser_is_sent_to_token_page(srv: ServerProcess) -> None:
    with browser(srv) as c:
        r = c.get("/notebooks/a.ipynb")
        assert r.status_code == 302
        assert r.headers["Location"].startswith("/login?next=")
        page = c.get(r.headers["Location"])
        assert page.status_code == 200
        assert "token" in page.text.lower()


def test_wrong_token_is_refused(srv: ServerProcess) -> None:
    with browser(srv) as c:
        r = c.get("/?token=wrong")
        assert r.status_code in (401, 403)
        assert "zasper-config" not in r.text


def test_shell_after_token_login(srv: ServerProcess) -> None:
    with browser(srv) as c:
        login(c, srv)
        for path in ("/", "/tree", "/tree/sub/dir", "/notebooks/x%20y.ipynb", "/edit/a.txt", "/view/p.png"):
            r = c.get(path)
            assert r.status_code == 200, path
            assert r.headers["Cache-Control"] == "no-cache"
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
            cfg = page_config(r.text)
            assert cfg["baseUrl"] == "/"
            assert cfg["authMode"] == "token"
            assert cfg["logoutUrl"] == "/logout"
            assert srv.token not in r.text
        # The shell hands the browser its XSRF cookie for writes.
        assert c.cookies.get("_xsrf")


def test_lab_redirects_to_tree(srv: ServerProcess) -> None:
    with browser(srv) as c:
        r = c.get("/lab/workspaces/x")
        assert r.status_code == 302 and r.headers["Location"] == "/tree"


def test_assets_are_immutable_and_precompressed(srv: ServerProcess) -> None:
    info = json.loads((DIST / "build-info.json").read_text())
    js = info["entry"]["js"]
    with browser(srv) as c:
        r = c.get(f"/static/ui/{js}", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200
        assert r.headers["Content-Encoding"] == "gzip"
        assert "immutable" in r.headers["Cache-Control"]
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert r.content == (DIST / js).read_bytes()  # httpx decoded the gzip
        raw = c.get(f"/static/ui/{js}", headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in raw.headers
        assert raw.content == (DIST / js).read_bytes()
        etag = raw.headers["Etag"]
        again = c.get(f"/static/ui/{js}", headers={"Accept-Encoding": "identity", "If-None-Match": etag})
        assert again.status_code == 304
        head = c.head(f"/static/ui/{js}", headers={"Accept-Encoding": "gzip"})
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == (DIST / (js + ".gz")).stat().st_size


@pytest.mark.parametrize(
    "path",
    ["../web/ui.py", "..%2Fweb%2Fui.py", "fonts/../../src/main.ts", "missing.js", "index.html.gz", "%2Fetc%2Fpasswd"],
)
def test_assets_cannot_escape_or_guess(srv: ServerProcess, path: str) -> None:
    with browser(srv) as c:
        r = c.get(f"/static/ui/{path}")
        assert r.status_code == 404, path


def set_password(config_dir: Path, password: str) -> dict[str, str]:
    """Store a password with the real `zasperhub password` command; returns the env to use."""
    env = {"ZASPERHUB_CONFIG_DIR": str(config_dir)}
    subprocess.run(
        [sys.executable, "-m", "zasperhub.platform.cli", "password", "--stdin"],
        input=password + "\n", text=True, check=True, timeout=60, env=dict(os.environ, **env), capture_output=True,
    )
    return env


def test_protected_mode_redirects_to_password_login(start_server, tmp_path: Path) -> None:
    env = set_password(tmp_path / "cfg", "correct horse battery staple")
    srv = start_server(None, "--protected=true", env=env)
    with browser(srv) as c:
        r = c.get("/tree")
        assert r.status_code == 302
        assert r.headers["Location"].startswith("/login?next=%2Ftree")
        assert "password" in c.get(r.headers["Location"]).text.lower()


class _Registry:
    """A kernel registry double that records prewarm calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def prewarm(self, *args: object) -> None:
        self.calls.append(args)
        if self.fail:
            raise RuntimeError("no kernelspec")


class _Handler:
    def __init__(self, registry: object) -> None:
        self.zasper = type("App", (), {"kernel_registry": registry})()


def test_app_shell_prewarms_a_kernel_when_the_registry_can() -> None:
    from zasperhub.platform.web.ui import AppShellHandler

    reg = _Registry()
    AppShellHandler._prewarm_kernel(_Handler(reg))  # type: ignore[arg-type]
    assert reg.calls == [()]
    # A failing warm-up must not break the page; a registry without prewarm is fine.
    AppShellHandler._prewarm_kernel(_Handler(_Registry(fail=True)))  # type: ignore[arg-type]
    AppShellHandler._prewarm_kernel(_Handler(object()))  # type: ignore[arg-type]
    AppShellHandler._prewarm_kernel(_Handler(None))  # type: ignore[arg-type]
