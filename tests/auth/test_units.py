"""Framework-free auth logic: next-URL validation, back-off, password store, token provider."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from zasperhub.auth.base import AuthSetupError, RequestInfo, constant_time_equal
from zasperhub.auth.password import (
    MAX_PASSWORD_LENGTH,
    PasswordIdentityProvider,
    PasswordStore,
)
from zasperhub.auth.paths import (
    load_or_create_cookie_secret,
    read_private_file,
    write_private_file,
)
from zasperhub.auth.redirects import safe_next_url
from zasperhub.auth.throttle import LoginThrottle
from zasperhub.auth.token import MAX_TOKEN_LENGTH, TokenIdentityProvider


def req(headers: dict[str, str] | None = None, query: dict[str, str] | None = None, cookies: dict[str, str] | None = None) -> RequestInfo:
    return RequestInfo(method="GET", path="/api/status", headers=headers or {}, query=query or {}, cookies=cookies or {})


# -- next= validation -------------------------------------------------------------
@pytest.mark.parametrize(
    "candidate",
    [
        "//evil.example/x",
        "http://evil.example/",
        "https:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/other/",  # outside the base URL
        "/user/alice/../bob/",
        "/user/alice/%2e%2e/bob/",
        "/user/alicex/",
        "/user/alice/" + "a" * 3000,
        "",
        None,
    ],
)
def test_next_url_rejects_foreign_targets(candidate: str | None) -> None:
    assert safe_next_url(candidate, "/user/alice/") == "/user/alice/"


@pytest.mark.parametrize("candidate", ["/user/alice/", "/user/alice/tree?path=a%20b", "/user/alice/lab#x", "/user/alice"])
def test_next_url_keeps_local_paths(candidate: str) -> None:
    assert safe_next_url(candidate, "/user/alice/") == candidate


# -- back-off ----------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_backs_off_exponentially_per_client() -> None:
    clock = FakeClock()
    t = LoginThrottle(clock=clock, free_attempts=2, base_delay=1.0, max_delay=8.0)
    assert t.failure("a") == 0 and t.failure("a") == 0
    assert [t.failure("a") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert t.retry_after("a") == 8.0
    assert t.retry_after("b") == 0.0  # other clients are unaffected
    clock.now += 8.0
    assert t.retry_after("a") == 0.0
    t.success("a")
    assert t.failure("a") == 0.0  # success resets the count


def test_throttle_forgets_old_failures_and_bounds_memory() -> None:
    clock = FakeClock()
    t = LoginThrottle(clock=clock, free_attempts=0, base_delay=1.0, forget_after=60, max_clients=3)
    t.failure("a")
    clock.now += 61
    assert t.retry_after("a") == 0.0
    assert t.failure("a") == 1.0  # counted afresh
    for name in "bcde":
        t.failure(name)
    assert len(t._clients) == 3 and "a" not in t._clients


# -- password store ----------------------------------------------------------------
def test_password_store_roundtrip_is_private(tmp_path: Path) -> None:
    store = PasswordStore(tmp_path / "cfg" / "password.json")
    store.set_password("correct horse battery")
    mode = stat.S_IMODE(store.path.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    text = store.path.read_text()
    assert "correct horse" not in text
    assert json.loads(text)["hash"].startswith("$argon2id$")
    assert store.verify("correct horse battery")
    assert not store.verify("correct horse batter")
    assert not store.verify("")
    assert not store.verify("x" * (MAX_PASSWORD_LENGTH + 1))


@pytest.mark.parametrize("bad", ["short", " leading-space", "x" * (MAX_PASSWORD_LENGTH + 1)], ids=["short", "space", "too-long"])
def test_password_store_rejects_unfit_passwords_and_keeps_the_old(tmp_path: Path, bad: str) -> None:
    store = PasswordStore(tmp_path / "password.json")
    store.set_password("first-password")
    before = store.path.read_bytes()
    with pytest.raises(ValueError):
        store.set_password(bad)
    assert store.path.read_bytes() == before
    assert store.verify("first-password")


def test_damaged_password_file_is_a_clear_setup_error(tmp_path: Path) -> None:
    path = tmp_path / "password.json"
    write_private_file(path, b"{not json")
    with pytest.raises(AuthSetupError, match="damaged"):
        PasswordStore(path).load()
    write_private_file(path, b'{"hash": "plaintext"}')
    with pytest.raises(AuthSetupError, match="argon2"):
        PasswordStore(path).load()
    # While running, a damaged file locks everyone out instead of raising.
    assert PasswordStore(path).current_hash() is None


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    os.chmod(path, 0o644)
    assert read_private_file(path) == b"x"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_cookie_secret_is_persisted_0600(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "cookie_secret"
    first = load_or_create_cookie_secret(path)
    assert len(first) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_cookie_secret(path) == first
    path.write_bytes(b"short")
    assert load_or_create_cookie_secret(path) != b"short"


def test_password_change_changes_session_fingerprint(tmp_path: Path) -> None:
    store = PasswordStore(tmp_path / "password.json")
    store.set_password("password-one")
    provider = PasswordIdentityProvider(store)
    before = provider.session_fingerprint()
    store.set_password("password-two")
    assert provider.session_fingerprint() != before


# -- token provider ----------------------------------------------------------------
def run(coro):
    return asyncio.run(coro)


def test_token_provider_accepts_header_query_cookie() -> None:
    p = TokenIdentityProvider("s3cret", cookie_name="c")
    assert run(p.authenticate(req({"Authorization": "token s3cret"}))).user.via == "token"
    assert run(p.authenticate(req({"Authorization": "Bearer s3cret"}))).user is not None
    r = run(p.authenticate(req(query={"token": "s3cret"})))
    assert r.user is not None and r.set_cookie
    ws = run(p.authenticate(req({"Upgrade": "websocket"}, query={"token": "s3cret"})))
    assert ws.user is not None and not ws.set_cookie
    assert run(p.authenticate(req(cookies={"c": "zasper"}))).user.via == "cookie"


@pytest.mark.parametrize(
    "headers,query,status",
    [
        ({"Authorization": "token wrong"}, {}, 403),
        ({"Authorization": "token " + "x" * (MAX_TOKEN_LENGTH + 1)}, {}, 403),
        ({}, {"token": "s3cre"}, 403),
        ({}, {}, 401),
        ({"Authorization": "Basic s3cret"}, {}, 401),
        ({"Authorization": "token "}, {}, 401),
    ],
)
def test_token_provider_refuses_bad_credentials(headers: dict[str, str], query: dict[str, str], status: int) -> None:
    result = run(TokenIdentityProvider("s3cret").authenticate(req(headers, query)))
    assert result.user is None and result.status == status and result.error


def test_password_provider_never_treats_empty_token_as_open() -> None:
    p = PasswordIdentityProvider(PasswordStore(Path("/nonexistent/password.json")), token="")
    assert run(p.authenticate(req())).user is None
    assert run(p.authenticate(req({"Authorization": "token "}))).user is None


def test_token_login_form_is_throttled() -> None:
    p = TokenIdentityProvider("s3cret", throttle=LoginThrottle(free_attempts=1, base_delay=60))
    assert run(p.login("nope", "1.2.3.4")).error
    assert run(p.login("nope", "1.2.3.4")).error
    locked = run(p.login("s3cret", "1.2.3.4"))
    assert locked.user is None and locked.retry_after > 0
    assert run(p.login("s3cret", "5.6.7.8")).user is not None


def test_constant_time_equal_handles_text_and_bytes() -> None:
    assert constant_time_equal("abc", b"abc")
    assert not constant_time_equal("abc", "abd")
    assert not constant_time_equal("abc", "abcd")


# -- hub environment -----------------------------------------------------------------
HUB_ENV = {
    "JUPYTERHUB_SERVICE_PREFIX": "/user/alice/",
    "JUPYTERHUB_SERVICE_URL": "http://127.0.0.1:41234/user/alice/",
    "JUPYTERHUB_ROOT_DIR": "/srv/alice",
}


def test_hub_environment_sets_base_url_bind_address_and_root() -> None:
    from zasperhub.auth.hub import apply_hub_environment
    from zasperhub.platform.app import ZasperApp

    app = ZasperApp(hub_mode=True)
    app.initialize([])
    apply_hub_environment(app, HUB_ENV)
    assert app.base_url == "/user/alice/"
    assert (app.ip, app.port) == ("127.0.0.1", 41234)
    assert app.root_dir == "/srv/alice"
    assert app.allow_remote_access and app.trust_xheaders and not app.open_browser


def test_hub_environment_never_overrides_explicit_settings() -> None:
    from zasperhub.auth.hub import apply_hub_environment
    from zasperhub.platform.app import ZasperApp

    app = ZasperApp(hub_mode=True)
    app.initialize(["--port=5555", "--base-url=/custom/"])
    apply_hub_environment(app, HUB_ENV)
    assert app.port == 5555 and app.base_url == "/custom/"
    assert app.ip == "127.0.0.1"


def test_default_access_scopes_fail_closed() -> None:
    from zasperhub.auth.hub_client import parse_scopes as _default_access_scopes

    assert _default_access_scopes({}) == set()
    assert "access:servers!server=alice/" in _default_access_scopes({"JUPYTERHUB_USER": "alice"})


# -- activity ------------------------------------------------------------------------
def test_busy_kernels_count_as_activity_now_unless_disabled() -> None:
    import datetime

    from zasperhub.auth.activity import HubActivityReporter

    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    busy = {"value": True}
    reporter = HubActivityReporter("http://127.0.0.1:9/", "t", "", last_activity=lambda: old, any_kernel_busy=lambda: busy["value"])
    assert reporter.current_activity() > old + datetime.timedelta(days=365)
    busy["value"] = False
    assert reporter.current_activity() == old
    busy["value"] = True
    reporter.busy_kernels_are_active = False
    assert reporter.current_activity() == old


def test_unreadable_password_file_is_a_clear_setup_error(tmp_path: Path) -> None:
    path = tmp_path / "password.json"
    path.mkdir()  # a directory where the file should be: reading fails with OSError
    with pytest.raises(AuthSetupError, match="Cannot read the password file"):
        PasswordStore(path).load()
