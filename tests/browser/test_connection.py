"""End to end: logging in on a `--protected=true` server, and staying
connected through a network blip and a server restart."""

from __future__ import annotations

import re
from pathlib import Path

from tests.browser.conftest import set_password, shot
from tests.browser.helpers import IDLE, new_notebook, run_in_new_cell, wait_cell_done
from tests.support.server import ServerProcess

PASSWORD = "correct horse battery staple"


def test_password_login(chromium, start_server, tmp_path: Path) -> None:
    env = set_password(tmp_path / "cfg", PASSWORD)
    srv = start_server(None, "--protected=true", env=env)
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(45_000)
        page.goto(f"{srv.url}/tree")
        page.wait_for_selector("input[type=password]")
        assert "/login" in page.url
        page.fill("input[type=password]", "wrong password!")
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Invalid password")
        page.fill("input[type=password]", PASSWORD)
        shot(page, "09-password-login")
        page.keyboard.press("Enter")
        page.wait_for_selector(".zh-browser")
        assert page.url.rstrip("/").endswith("/tree")
        # The session lets the notebook API and kernel work without a token.
        new_notebook(page)
        run_in_new_cell(page, "print(6 * 7)")
        page.wait_for_selector(".zh-output-stream:has-text('42')")
        page.click("#zh-logout")
        page.goto(f"{srv.url}/tree")
        page.wait_for_selector("input[type=password]")
    finally:
        context.close()


def test_reconnects_after_network_blip_and_shows_missed_output(page, ui_server: ServerProcess) -> None:
    sockets: list = []
    blocked = {"on": False}

    def relay(ws) -> None:
        if blocked["on"]:
            # The network is "down": refuse, so the page keeps retrying.
            ws.close(code=4001, reason="network down")
            return
        ws.connect_to_server()
        sockets.append(ws)

    page.route_web_socket(re.compile(r".*/api/kernels/[^/]+/channels.*"), relay)
    new_notebook(page)
    assert len(sockets) == 1
    run_in_new_cell(page, "import time\nprint('before', flush=True)\ntime.sleep(1.5)\nprint('after the blip')")
    page.wait_for_selector(".zh-output-stream:has-text('before')")
    blocked["on"] = True
    sockets[-1].close(code=4000, reason="simulated network blip")
    page.wait_for_selector(".zh-kernel-status[data-status=disconnected]", timeout=15_000)
    shot(page, "10-disconnected")
    # The kernel prints while no client is connected ...
    page.wait_for_timeout(4_000)
    assert "after the blip" not in page.inner_text(".zh-cell >> nth=0 >> .zh-outputs")
    blocked["on"] = False
    # ... and the server replays it to the page when it reconnects.
    page.wait_for_selector(".zh-output-stream:has-text('after the blip')", timeout=60_000)
    wait_cell_done(page, 0)
    assert len(sockets) >= 2
    page.wait_for_selector(IDLE)
    run_in_new_cell(page, "print('still works')")
    page.wait_for_selector(".zh-output-stream:has-text('still works')")


def test_survives_server_restart(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    run_in_new_cell(page, "print('first life')")
    page.wait_for_selector(".zh-output-stream:has-text('first life')")
    ui_server.stop()
    page.wait_for_selector(".zh-kernel-status[data-status=disconnected]", timeout=30_000)
    ui_server.start()
    # A token-mode server signs sessions with a fresh key after a restart:
    # the page says so and keeps retrying; logging in from another tab is enough.
    page.wait_for_selector(".zh-banner:has-text('Log in again')", timeout=60_000)
    shot(page, "11-session-ended")
    other = page.context.new_page()
    other.goto(f"{ui_server.url}/?token={ui_server.token}")
    other.wait_for_selector(".zh-browser")
    other.close()
    # The old kernel died with the server: the page starts a new one itself
    # (and says so in a toast, which may already be gone by now).
    page.wait_for_selector(IDLE, timeout=90_000)
    assert page.locator(".zh-banner").is_hidden()
    run_in_new_cell(page, "print('second life')")
    page.wait_for_selector(".zh-output-stream:has-text('second life')")


class BaseUrlServer(ServerProcess):
    """A server whose every route (readiness probe included) is below a prefix."""

    prefix = "/user/alice"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}"


def test_under_a_base_url(chromium, tmp_path: Path) -> None:
    """As JupyterHub runs it: everything below /user/<name>/."""
    root = tmp_path / "root"
    root.mkdir()
    srv = BaseUrlServer(root, "--base-url=/user/alice/").start()
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(45_000)
        page.goto(f"{srv.url}/?token={srv.token}")
        page.wait_for_selector(".zh-browser")
        new_notebook(page)
        assert "/user/alice/notebooks/" in page.url
        run_in_new_cell(page, "print('under base url')")
        page.wait_for_selector(".zh-output-stream:has-text('under base url')")
        page.keyboard.press("Control+s")
        page.wait_for_selector(".zh-save-state[data-dirty=false]")
        page.click(".zh-logo")
        page.wait_for_selector(".zh-file-row:has-text('Untitled')")
        assert page.url.rstrip("/").endswith("/user/alice/tree")
    finally:
        context.close()
        srv.stop()
