"""End to end: the file browser — create, rename, delete, upload (chunked),
download, open text files and images."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from tests.browser.conftest import shot
from tests.browser.helpers import api
from tests.support.server import ServerProcess

PNG_1PX = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def row(page, name: str):
    return page.locator(f".zh-file-row:has(.zh-file-name:text-is('{name}'))")


def goto_tree(page, srv: ServerProcess, path: str = "") -> None:
    page.goto(f"{srv.url}/tree/{path}")
    page.wait_for_selector(".zh-files .zh-file-row")


def test_upload_chunked_and_download(page, ui_server: ServerProcess, tmp_path: Path) -> None:
    big = tmp_path / "data.bin"
    payload = os.urandom(2 * 1024 * 1024 + 12345)  # three 1 MiB chunks
    big.write_bytes(payload)
    small = tmp_path / "notes.txt"
    small.write_text("first line\n")
    goto_tree(page, ui_server)
    page.set_input_files("input[type=file]", [str(big), str(small)])
    row(page, "data.bin").wait_for(timeout=90_000)
    row(page, "notes.txt").wait_for()
    shot(page, "06-after-upload")
    with api(ui_server) as c:
        r = c.get("/api/contents/data.bin", params={"format": "base64", "content": "1"})
        assert base64.b64decode(r.json()["content"]) == payload

    with page.expect_download() as info:
        row(page, "data.bin").locator("a:has-text('Download')").click()
    downloaded = info.value
    assert Path(downloaded.path()).read_bytes() == payload
    assert downloaded.suggested_filename == "data.bin"


def test_upload_over_existing_asks_first(page, ui_server: ServerProcess, tmp_path: Path) -> None:
    with api(ui_server) as c:
        c.put("/api/contents/keep.txt", json={"type": "file", "format": "text", "content": "original"})
    f = tmp_path / "keep.txt"
    f.write_text("replacement")
    goto_tree(page, ui_server)
    page.set_input_files("input[type=file]", [str(f)])
    page.wait_for_selector(".zh-dialog:has-text('already exists')")
    page.click(".zh-dialog button:has-text('Cancel')")
    page.wait_for_timeout(300)
    with api(ui_server) as c:
        assert c.get("/api/contents/keep.txt").json()["content"] == "original"


def test_folder_rename_delete_and_breadcrumbs(page, ui_server: ServerProcess) -> None:
    with api(ui_server) as c:
        c.put("/api/contents/proj", json={"type": "directory"})
        c.put("/api/contents/proj/old.ipynb", json={"type": "notebook", "content": {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}})
    goto_tree(page, ui_server)
    row(page, "proj").locator(".zh-file-name").click()
    page.wait_for_selector(".zh-crumbs a:has-text('proj')")
    row(page, "old.ipynb").wait_for()
    assert page.url.endswith("/tree/proj")

    row(page, "old.ipynb").locator("button:has-text('Rename')").click()
    page.fill(".zh-dialog input", "new name.ipynb")
    page.keyboard.press("Enter")
    row(page, "new name.ipynb").wait_for()
    with api(ui_server) as c:
        assert c.get("/api/contents/proj/new%20name.ipynb").status_code == 200
        assert c.get("/api/contents/proj/old.ipynb").status_code == 404

    page.click("text=+ Folder")
    row(page, "Untitled Folder").wait_for()
    row(page, "Untitled Folder").locator("button:has-text('Delete')").click()
    page.wait_for_selector(".zh-dialog:has-text('cannot be undone')")
    shot(page, "07-delete-confirm")
    page.click(".zh-dialog button:has-text('Delete')")
    row(page, "Untitled Folder").wait_for(state="detached")

    page.click(".zh-crumbs a:has-text('Home')")
    row(page, "proj").wait_for()


def test_text_editor_and_image_viewer(page, ui_server: ServerProcess) -> None:
    with api(ui_server) as c:
        c.put("/api/contents/script.py", json={"type": "file", "format": "text", "content": "x = 1\n"})
        c.put("/api/contents/dot.png", json={"type": "file", "format": "base64", "content": base64.b64encode(PNG_1PX).decode()})
    goto_tree(page, ui_server)
    row(page, "script.py").locator(".zh-file-name").click()
    page.wait_for_selector(".zh-textfile .cm-content")
    page.click(".zh-textfile .cm-content")
    page.keyboard.press("Control+End")
    page.keyboard.insert_text("y = 2\n")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".zh-save-state[data-dirty=false]")
    shot(page, "08-text-editor")
    with api(ui_server) as c:
        assert c.get("/api/contents/script.py").json()["content"] == "x = 1\ny = 2\n"
    page.go_back()
    row(page, "dot.png").locator(".zh-file-name").click()
    img = page.wait_for_selector(".zh-image-view img")
    page.wait_for_function("() => document.querySelector('.zh-image-view img').naturalWidth === 1")
    assert img.get_attribute("src").endswith("/files/dot.png")


def test_unsaved_changes_warn_before_leaving(page, ui_server: ServerProcess) -> None:
    with api(ui_server) as c:
        c.put("/api/contents/draft.txt", json={"type": "file", "format": "text", "content": "draft"})
    page.goto(f"{ui_server.url}/edit/draft.txt")
    page.wait_for_selector(".zh-textfile .cm-content")
    page.click(".zh-textfile .cm-content")
    page.keyboard.insert_text("more ")
    page.click(".zh-logo")
    page.wait_for_selector(".zh-dialog:has-text('unsaved changes')")
    page.click(".zh-dialog button:has-text('Cancel')")
    assert "/edit/draft.txt" in page.url
