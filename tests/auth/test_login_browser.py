"""The password login page in a real browser (Debian Chromium via Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.auth.helpers import set_password
from tests.support.server import ServerProcess

pytestmark = pytest.mark.browser

PASSWORD = "browser-login-password"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def protected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cfg = tmp_path_factory.mktemp("cfg")
    assert set_password(cfg, PASSWORD).returncode == 0
    root = tmp_path_factory.mktemp("root")
    srv = ServerProcess(root, "--protected=true", env={"ZASPERHUB_CONFIG_DIR": str(cfg)}).start()
    yield srv
    srv.stop()


def test_browser_logs_in_and_out_without_scripts(protected: ServerProcess, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            # JavaScript off: the login page must work as a plain form.
            context = browser.new_context(java_script_enabled=False)
            page = context.new_page()
            page.goto(protected.url + "/tree")
            assert page.url == protected.url + "/login?next=%2Ftree"
            page.fill("#secret", "not-the-password")
            page.click("button[type=submit]")
            assert page.locator(".error").inner_text() == "Invalid password"
            page.screenshot(path=str(tmp_path / "login-error.png"))
            page.fill("#secret", PASSWORD)
            page.click("button[type=submit]")
            assert page.url == protected.url + "/tree"
            page.goto(protected.url + "/api/me")
            assert '"username":"zasper"' in page.content()
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies[f"zasperhub-session-{protected.port}"]
            assert session["httpOnly"] and session["sameSite"] == "Lax"
            page.goto(protected.url + "/logout")
            assert page.url.startswith(protected.url + "/login")
            assert f"zasperhub-session-{protected.port}" not in {c["name"] for c in context.cookies()}
            context.close()
        finally:
            browser.close()
