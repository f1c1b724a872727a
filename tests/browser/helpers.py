"""Page actions shared by the browser tests."""

from __future__ import annotations

import httpx

from tests.support.server import ServerProcess

IDLE = ".zh-kernel-status[data-status=idle]"


def new_notebook(page) -> str:
    """Create a notebook from the file browser; returns its path once the kernel is idle."""
    page.click("text=+ Notebook")
    page.wait_for_selector(".zh-notebook")
    page.wait_for_selector(IDLE, timeout=90_000)
    return page.inner_text(".zh-title")


def open_notebook(page, srv: ServerProcess, path: str) -> None:
    page.goto(f"{srv.url}/notebooks/{path}")
    page.wait_for_selector(".zh-notebook")
    page.wait_for_selector(IDLE, timeout=90_000)


def type_in_active_cell(page, code: str) -> None:
    """Put `code` into the active cell's editor (inserted as text: no auto-indent)."""
    editor = page.locator(".zh-cell.zh-active .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)


def run_in_new_cell(page, code: str) -> None:
    """Type into the active (empty) cell and run it with Shift+Enter."""
    type_in_active_cell(page, code)
    page.keyboard.press("Shift+Enter")


def cell(page, index: int):
    return page.locator(".zh-cell").nth(index)


def wait_cell_done(page, index: int, timeout: float = 60_000) -> None:
    """Wait until the cell has an execution count (not '[*]' or blank)."""
    page.wait_for_function(
        "i => { const p = document.querySelectorAll('.zh-cell')[i]?.querySelector('.zh-prompt'); return p && /\\[\\d+\\]/.test(p.textContent); }",
        arg=index,
        timeout=timeout,
    )


def api(srv: ServerProcess) -> httpx.Client:
    return srv.client()
