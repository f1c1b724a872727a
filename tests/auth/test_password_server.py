"""`--protected=true` against the real server: login, cookies, XSRF, lockout, restart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tornado.web import create_signed_value

from tests.auth.helpers import login, login_form, set_cookie_headers, set_password
from tests.support.server import ServerProcess

PASSWORD = "pa55-w0rd-for-tests"


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tmp_path_factory.mktemp("zcfg")
    done = set_password(cfg, PASSWORD)
    assert done.returncode == 0, done.stderr
    return cfg


@pytest.fixture(scope="module")
def server(config_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("pwroot")
    srv = ServerProcess(root, "--protected=true", "--log-level=DEBUG", env={"ZASPERHUB_CONFIG_DIR": str(config_dir)}).start()
    yield srv
    srv.stop()


def browser(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)


def session_cookie(server: ServerProcess) -> str:
    return f"zasperhub-session-{server.port}"


def test_refuses_to_start_without_password(tmp_path: Path) -> None:
    root = tmp_path / "r"
    root.mkdir()
    env = dict(os.environ, ZASPERHUB_CONFIG_DIR=str(tmp_path / "empty"))
    proc = subprocess.run(
        [sys.executable, "-m", "zasperhub.platform.cli", "--protected=true", "--port=0", f"--root-dir={root}", "--no-browser"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "zasperhub password" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_password_command_stores_only_a_private_hash(config_dir: Path, tmp_path: Path) -> None:
    path = config_dir / "password.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert PASSWORD not in path.read_text() and "$argon2id$" in path.read_text()
    bad = set_password(tmp_path / "c2", "short")
    assert bad.returncode == 1 and "at least" in bad.stderr
    assert not (tmp_path / "c2" / "password.json").exists()


def test_login_page_and_anonymous_requests(server: ServerProcess) -> None:
    with browser(server) as c:
        page = c.get("/login")
        assert page.status_code == 200
        assert '<form method="post"' in page.text and 'type="password"' in page.text and "<script" not in page.text
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
        api = c.get("/api/status")
        assert api.status_code == 401
        assert "log in" in api.json()["message"]
        # A browser page without credentials is sent to the login page.
        page = c.get("/kernelspecs/python3/logo-64x64.png", params={"v": "2"})
        assert page.status_code == 302
        assert page.headers["location"] == "/login?next=%2Fkernelspecs%2Fpython3%2Flogo-64x64.png%3Fv%3D2"


def test_login_needs_the_form_xsrf_token(server: ServerProcess) -> None:
    with browser(server) as c:
        login_form(c)
        r = c.post("/login", data={"password": PASSWORD})
        assert r.status_code == 403 and "another site" in r.text
        assert not set_cookie_headers(r, session_cookie(server))
        # A token from another browser (cookie mismatch) fails the same way.
        with browser(server) as other:
            foreign = login_form(other)
        c.cookies.clear()
        r = c.post("/login", data={"password": PASSWORD, "_xsrf": foreign})
        assert r.status_code == 403


@pytest.mark.parametrize(
    "password,status",
    [("wrong-password", 401), ("", 400), ("x" * 5000, 401), (PASSWORD + " ", 401)],
)
def test_bad_passwords_get_clear_errors_and_no_session(server: ServerProcess, password: str, status: int) -> None:
    with browser(server) as c:
        r = login(c, password)
        assert r.status_code == status
        assert '<p class="error"' in r.text
        assert not set_cookie_headers(r, session_cookie(server))
        assert c.get("/api/me").status_code == 401
    # Bad attempts here must not lock the suite's client out of later tests.
    with browser(server) as c:
        assert login(c, PASSWORD).status_code == 302


def test_login_session_xsrf_and_logout(server: ServerProcess) -> None:
    with browser(server) as c:
        r = login(c, PASSWORD, next_url="/api/me?x=1")
        assert r.status_code == 302 and r.headers["location"] == "/api/me?x=1"
        (raw,) = set_cookie_headers(r, session_cookie(server))
        flags = [f.strip().lower() for f in raw.split(";")]
        assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
        assert "secure" not in flags  # plain http here
        assert any(f.startswith("expires=") for f in flags)
        assert raw.split("=", 1)[1].strip('"').startswith("2|")  # tornado v2 signed value
        me = c.get("/api/me")
        assert me.status_code == 200 and me.json()["identity"]["username"] == "zasper"

        # A cookie-authenticated write needs the XSRF token echoed in a header.
        no_xsrf = c.post("/api/contents", json={"type": "notebook"})
        assert no_xsrf.status_code == 403 and "_xsrf" in no_xsrf.json()["message"]
        assert not list(Path(server.root_dir).iterdir())
        xsrf = c.cookies.get("_xsrf")
        assert xsrf
        ok = c.post("/api/contents", json={"type": "notebook"}, headers={"X-XSRFToken": xsrf})
        assert ok.status_code == 201, ok.text

        stolen = c.cookies.get(session_cookie(server))
        out = c.get("/logout")
        assert out.status_code == 302 and out.headers["location"] == "/login"
        assert c.get("/api/me").status_code == 401
    # Replaying the logged-out cookie does not work either.
    with browser(server) as thief:
        thief.cookies.set(session_cookie(server), stolen)
        assert thief.get("/api/me").status_code == 401


@pytest.mark.parametrize("next_url", ["//evil.example/", "https://evil.example/", "/\\evil.example", "/../etc"])
def test_login_never_redirects_off_site(server: ServerProcess, next_url: str) -> None:
    with browser(server) as c:
        r = login(c, PASSWORD, next_url=next_url)
        assert r.status_code == 302 and r.headers["location"] == "/"


def test_forged_and_foreign_cookies_are_refused(server: ServerProcess) -> None:
    name = session_cookie(server)
    with browser(server) as c:
        assert login(c, PASSWORD).status_code == 302
        good = c.cookies.get(name).strip('"')
    parts = good.split("|")
    forged_payload = parts[:]
    forged_payload[4] = forged_payload[4][:-4] + ("AAAA" if not forged_payload[4].endswith("AAAA") else "BBBB")
    candidates = [
        "|".join(forged_payload),
        good[:-2] + ("00" if not good.endswith("00") else "11"),
        create_signed_value(b"another-secret-" * 3, name, b'{"u":"zasper","f":"x","t":1,"s":"y"}').decode(),
        "x" * 9000,
        "",
    ]
    for value in candidates:
        with browser(server) as c:
            c.cookies.set(name, value)
            r = c.get("/api/me")
            assert r.status_code == 401, value


def test_api_token_still_works_in_password_mode(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/api/me", headers=server.headers).status_code == 200
        assert c.get("/api/me", headers={"Authorization": "Bearer " + server.token}).status_code == 200
        assert c.get("/api/me", headers={"Authorization": "token nope"}).status_code == 403


def test_password_never_logged(server: ServerProcess) -> None:
    with browser(server) as c:
        login(c, "a-wrong-guess-to-log")
        login(c, PASSWORD)
    log = server.log()
    assert "Failed login from 127.0.0.1" in log
    assert PASSWORD not in log and "a-wrong-guess-to-log" not in log


def test_lockout_after_repeated_failures(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    assert set_password(cfg, PASSWORD).returncode == 0
    root = tmp_path / "root"
    root.mkdir()
    srv = ServerProcess(
        root, "--protected=true", "--LoginThrottle.free_attempts=1", "--LoginThrottle.base_delay=3",
        env={"ZASPERHUB_CONFIG_DIR": str(cfg)},
    ).start()
    try:
        with browser(srv) as c:
            assert login(c, "guess-one").status_code == 401
            assert login(c, "guess-two").status_code == 401
            locked_at = time.monotonic()
            locked = login(c, PASSWORD)  # right password, but the client must wait
            assert locked.status_code == 429
            assert int(locked.headers["retry-after"]) >= 1
            assert "try again" in locked.text
            assert not set_cookie_headers(locked, session_cookie(srv))
            time.sleep(max(0.0, 3.2 - (time.monotonic() - locked_at)))
            assert login(c, PASSWORD).status_code == 302
        log = srv.log()
        assert "next attempt allowed in 3s" in log
        assert "guess-one" not in log and PASSWORD not in log
    finally:
        srv.stop()


def test_session_survives_restart_and_ends_on_password_change(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    assert set_password(cfg, PASSWORD).returncode == 0
    root = tmp_path / "root"
    root.mkdir()
    env = {"ZASPERHUB_CONFIG_DIR": str(cfg)}
    first = ServerProcess(root, "--protected=true", env=env).start()
    with browser(first) as c:
        assert login(c, PASSWORD).status_code == 302
        cookie = c.cookies.get(session_cookie(first))
    first.stop()
    secret = cfg / "cookie_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600

    second = ServerProcess(root, "--protected=true", env=env)
    second.port = first.port  # same port: same cookie name
    second.log_path = root.parent / "server-second.log"
    second.start()
    try:
        with browser(second) as c:
            c.cookies.set(session_cookie(second), cookie)
            assert c.get("/api/me").status_code == 200
            assert set_password(cfg, "a-brand-new-password").returncode == 0
            deadline = time.monotonic() + 10
            status = 200
            while time.monotonic() < deadline and status == 200:
                time.sleep(0.5)
                status = c.get("/api/me").status_code
            assert status == 401
            c.cookies.clear()
            assert login(c, PASSWORD).status_code == 401
            assert login(c, "a-brand-new-password").status_code == 302
    finally:
        second.stop()
