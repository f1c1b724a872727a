"""Browser end-to-end fixtures: Debian's Chromium driven by Playwright
against a real `zasperhub` server, with screenshots under test-artifacts/."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


# Package scope, not session: Playwright's sync API keeps an event loop running
# in this thread while it is open, which would break every asyncio test that
# runs after the browser tests.
@pytest.fixture(scope="package")
def chromium() -> Iterator:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian chromium is required: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_server(module_server: ServerProcess) -> ServerProcess:
    """One token-mode server per test module (kernels are per notebook anyway)."""
    return module_server


class PageErrors(list):
    """Uncaught page errors seen during a test (they fail it)."""


@pytest.fixture
def page(chromium, ui_server: ServerProcess, request: pytest.FixtureRequest) -> Iterator:
    """A fresh browser profile (context) logged in with the token."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(45_000)
    errors = PageErrors()
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(f"{ui_server.url}/?token={ui_server.token}")
    pg.wait_for_selector(".zh-browser")
    pg.errors = errors  # type: ignore[attr-defined]
    yield pg
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        shot(pg, f"FAILED-{request.node.name}")
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def shot(page, name: str) -> Path:
    """Save a screenshot as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def set_password(config_dir: Path, password: str) -> dict[str, str]:
    """Store a password with the real `zasperhub password` command; returns the env to use."""
    env = {"ZASPERHUB_CONFIG_DIR": str(config_dir)}
    subprocess.run(
        [sys.executable, "-m", "zasperhub.platform.cli", "password", "--stdin"],
        input=password + "\n", text=True, check=True, timeout=60, env=dict(os.environ, **env), capture_output=True,
    )
    return env
