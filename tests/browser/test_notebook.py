"""End to end: the notebook workflow a data scientist does every day, in
Chromium against a real server and real ipykernel."""

from __future__ import annotations

import json

from tests.browser.conftest import shot
from tests.browser.helpers import IDLE, api, cell, new_notebook, open_notebook, run_in_new_cell, type_in_active_cell, wait_cell_done
from tests.support.server import ServerProcess

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('squares')\nplt.show()"


def test_create_run_save_reload(page, ui_server: ServerProcess) -> None:
    shot(page, "01-file-browser")
    path = new_notebook(page)

    run_in_new_cell(page, "print('hello from zasper')")
    page.wait_for_selector(".zh-cell >> nth=0 >> .zh-output-stream:has-text('hello from zasper')")
    wait_cell_done(page, 0)
    assert page.inner_text(".zh-cell >> nth=0 >> .zh-prompt") == "[1]:"
    assert page.inner_text(".zh-cell >> nth=0 >> .zh-timing")  # per-cell run time

    run_in_new_cell(page, PLOT)
    page.wait_for_selector(".zh-cell >> nth=1 >> img[src^='data:image/png;base64,']", timeout=90_000)

    run_in_new_cell(page, "1/0")
    err = page.wait_for_selector(".zh-cell >> nth=2 >> .zh-output-error")
    assert "ZeroDivisionError" in err.inner_text()
    # IPython colours tracebacks; the colours arrive as styled spans, not escapes.
    assert err.query_selector("span[style*='color']") is not None
    assert "\x1b" not in err.inner_text()

    run_in_new_cell(page, "name = input('Your name: ')\nprint('hi', name)")
    box = page.wait_for_selector(".zh-stdin-input")
    shot(page, "02-input-prompt")
    box.fill("Ada")
    box.press("Enter")
    page.wait_for_selector(".zh-cell >> nth=3 >> .zh-output-stream:has-text('hi Ada')")
    wait_cell_done(page, 3)

    # A markdown cell with math.
    page.click("button[title='Insert markdown cell below']")
    page.keyboard.insert_text("# Results\n\nArea is $\\pi r^2$")
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".zh-md .zh-rendered h1:has-text('Results')")
    page.wait_for_selector(".zh-md .zh-rendered .katex")
    assert not page.locator(".zh-md .cm-editor").is_visible()  # source hidden once rendered

    page.keyboard.press("Control+s")
    page.wait_for_selector(".zh-save-state[data-dirty=false]")
    shot(page, "03-notebook-outputs")

    with api(ui_server) as c:
        nb = c.get(f"/api/contents/{path}").json()["content"]
    kinds = [o["output_type"] for cell_ in nb["cells"] for o in cell_.get("outputs", [])]
    assert kinds.count("error") == 1 and "display_data" in kinds
    assert any("image/png" in o.get("data", {}) for c_ in nb["cells"] for o in c_.get("outputs", []))

    page.reload()
    page.wait_for_selector(".zh-notebook")
    page.wait_for_selector(".zh-cell >> nth=0 >> .zh-output-stream:has-text('hello from zasper')")
    assert page.query_selector(".zh-cell >> nth=1 >> img[src^='data:image/png;base64,']") is not None
    assert "ZeroDivisionError" in page.inner_text(".zh-cell >> nth=2 >> .zh-output-error")
    assert "hi Ada" in page.inner_text(".zh-cell >> nth=3")
    assert page.inner_text(".zh-cell >> nth=0 >> .zh-prompt") == "[1]:"


def test_restart_kernel_forgets_state(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    run_in_new_cell(page, "x = 41")
    wait_cell_done(page, 0)
    page.click("button[title='Restart kernel (0, 0)']")
    page.click(".zh-dialog button:has-text('Restart')")
    page.wait_for_selector(IDLE, timeout=90_000)
    run_in_new_cell(page, "print(x + 1)")
    err = page.wait_for_selector(".zh-cell >> nth=1 >> .zh-output-error")
    assert "NameError" in err.inner_text()


def test_command_mode_keys(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    type_in_active_cell(page, "a = 1")
    page.keyboard.press("Escape")
    page.keyboard.press("b")  # insert below (enters edit mode)
    page.keyboard.insert_text("b = 2")
    page.keyboard.press("Escape")
    assert page.locator(".zh-cell").count() == 2
    page.keyboard.press("a")  # insert above the active one
    page.keyboard.press("Escape")
    assert page.locator(".zh-cell").count() == 3
    page.keyboard.press("d")
    page.keyboard.press("d")
    assert page.locator(".zh-cell").count() == 2
    page.keyboard.press("z")  # undo the delete
    assert page.locator(".zh-cell").count() == 3
    page.keyboard.press("d")
    page.keyboard.press("d")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("m")  # to markdown
    assert "zh-md" in (cell(page, 1).get_attribute("class") or "")
    page.keyboard.press("y")  # back to code
    assert "zh-code" in (cell(page, 1).get_attribute("class") or "")
    page.keyboard.press("c")
    page.keyboard.press("v")  # paste copy below
    assert page.locator(".zh-cell").count() == 3
    assert "b = 2" in cell(page, 2).inner_text()


def test_tab_completion_and_inspect(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    run_in_new_cell(page, "import collections")
    wait_cell_done(page, 0)
    type_in_active_cell(page, "collections.Ordered")
    page.keyboard.press("Tab")
    page.wait_for_selector(".cm-tooltip-autocomplete:has-text('OrderedDict')")
    # CodeMirror ignores Enter for a moment after the list opens (against accidental picks).
    page.wait_for_timeout(300)
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+Tab")
    page.wait_for_selector(".zh-inspect")
    assert "OrderedDict" in page.inner_text(".zh-cell.zh-active .cm-content")


def test_untrusted_outputs_cannot_run_script(page, ui_server: ServerProcess) -> None:
    """Notebook files and kernels are untrusted: nothing they carry may run script in the app's origin."""
    evil_html = (
        '<b id="kept">bold stays</b><script>window.__pwned = "script"</script>'
        '<img src="x" onerror="window.__pwned = \'onerror\'">'
        "<a id=\"js\" href=\"javascript:window.__pwned='href'\">x</a>"
        "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>"
    )
    evil_svg = '<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=\'svg\'"><script>window.__pwned="svgscript"</script><rect width="5" height="5"/></svg>'
    nb = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {},
        "cells": [
            {"id": "m1", "cell_type": "markdown", "metadata": {}, "source": "hello <img src=x onerror=\"window.__pwned='md'\">"},
            {
                "id": "c1",
                "cell_type": "code",
                "metadata": {},
                "execution_count": 1,
                "source": "",
                "outputs": [
                    {"output_type": "display_data", "metadata": {}, "data": {"text/html": evil_html, "text/plain": "x"}},
                    {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": evil_svg}},
                    {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": "<img src=x onerror=\"window.__pwned='mdout'\">"}},
                ],
            },
        ],
    }
    with api(ui_server) as c:
        assert c.put("/api/contents/evil.ipynb", json={"type": "notebook", "content": nb}).status_code in (200, 201)
    open_notebook(page, ui_server, "evil.ipynb")
    page.wait_for_selector("#kept")
    page.click(".zh-cell >> nth=1 >> .zh-prompt")
    page.click("button[title='Insert code cell below (B)']")
    run_in_new_cell(page, "from IPython.display import HTML, display\ndisplay(HTML('<img src=y onerror=\"window.__pwned=1\"><b id=fromkernel>k</b>'))")
    page.wait_for_selector("#fromkernel")
    page.wait_for_timeout(500)  # give any handler a chance to fire
    assert page.evaluate("window.__pwned") is None
    href = page.get_attribute("#js", "href")
    assert not (href or "").startswith("javascript:")
    assert page.query_selector(".zh-outputs script, .zh-outputs iframe, .zh-outputs svg") is None
    shot(page, "04-sanitized-outputs")


def test_save_conflict_is_detected(page, ui_server: ServerProcess) -> None:
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"id": "a", "cell_type": "code", "metadata": {}, "source": "mine = 1", "outputs": [], "execution_count": None}]}
    with api(ui_server) as c:
        c.put("/api/contents/shared.ipynb", json={"type": "notebook", "content": nb})
        open_notebook(page, ui_server, "shared.ipynb")
        theirs = json.loads(json.dumps(nb))
        theirs["cells"][0]["source"] = "theirs = 2"
        c.put("/api/contents/shared.ipynb", json={"type": "notebook", "content": theirs})
        type_in_active_cell(page, "mine = 3")
        page.keyboard.press("Control+s")
        page.wait_for_selector(".zh-dialog:has-text('changed on disk')")
        shot(page, "05-save-conflict")
        page.click(".zh-dialog button:has-text('Cancel')")
        assert c.get("/api/contents/shared.ipynb").json()["content"]["cells"][0]["source"] == "theirs = 2"
        assert page.get_attribute(".zh-save-state", "data-dirty") == "true"
        page.keyboard.press("Control+s")
        page.click(".zh-dialog button:has-text('Overwrite')")
        page.wait_for_selector(".zh-save-state[data-dirty=false]")
        assert c.get("/api/contents/shared.ipynb").json()["content"]["cells"][0]["source"] == "mine = 3"
        # No conflict now: our own save is the version we know.
        type_in_active_cell(page, "mine = 4")
        page.keyboard.press("Control+s")
        page.wait_for_selector(".zh-save-state[data-dirty=false]")
        assert page.query_selector(".zh-dialog") is None
        assert c.get("/api/contents/shared.ipynb").json()["content"]["cells"][0]["source"] == "mine = 4"


def test_display_updates_clear_output_and_rich_types(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    code = (
        "from IPython.display import display, clear_output, Markdown, Latex, JSON, HTML\n"
        "h = display('first version', display_id=True)\n"
        "h.update('second version')\n"
        "for i in range(3):\n"
        "    clear_output(wait=True)\n"
        "    print('tick', i)\n"
        "display(Markdown('**bold md**'), Latex(r'$\\\\alpha + \\\\beta$'), JSON({'k': [1, 2]}), HTML('<table><tr><td id=cellx>9</td></tr></table>'))"
    )
    run_in_new_cell(page, code)
    wait_cell_done(page, 0)
    out = cell(page, 0).locator(".zh-outputs")
    page.wait_for_selector(".zh-cell >> nth=0 >> .katex")
    text = out.inner_text()
    # clear_output(wait=True) removed the display and the earlier ticks.
    assert "tick 2" in text and "tick 1" not in text and "first version" not in text
    assert out.locator("strong:has-text('bold md')").count() == 1
    assert out.locator("#cellx").count() == 1
    assert '"k"' in out.locator(".zh-json").inner_text()

    # update_display_data replaces the output in place.
    run_in_new_cell(page, "h2 = display('old', display_id=True)\nh2.update('new')")
    wait_cell_done(page, 1)
    page.wait_for_function("() => document.querySelectorAll('.zh-cell')[1].querySelector('.zh-outputs').innerText.includes('new')")
    assert "old" not in cell(page, 1).locator(".zh-outputs").inner_text()


def test_interrupt_and_dark_theme(page, ui_server: ServerProcess) -> None:
    new_notebook(page)
    run_in_new_cell(page, "import time\ntime.sleep(60)")
    page.wait_for_selector(".zh-kernel-status[data-status=busy]")
    page.click("button[title='Interrupt kernel (I, I)']")
    err = page.wait_for_selector(".zh-cell >> nth=0 >> .zh-output-error")
    assert "KeyboardInterrupt" in err.inner_text()
    page.wait_for_selector(IDLE)
    page.click("button[aria-label='Toggle theme']")
    assert page.get_attribute("html", "data-theme") in ("dark", "light")
    if page.get_attribute("html", "data-theme") != "dark":
        page.click("button[aria-label='Toggle theme']")
    assert page.get_attribute("html", "data-theme") == "dark"
    shot(page, "12-dark-theme")
    page.reload()
    page.wait_for_selector(".zh-notebook")
    assert page.get_attribute("html", "data-theme") == "dark"  # remembered


def test_rename_open_notebook(page, ui_server: ServerProcess) -> None:
    path = new_notebook(page)
    run_in_new_cell(page, "kept = 'yes'")
    wait_cell_done(page, 0)
    page.click(".zh-title")
    page.fill(".zh-dialog input", "renamed nb")
    page.keyboard.press("Enter")
    page.wait_for_selector(".zh-title:text-is('renamed nb.ipynb')")
    assert page.url.endswith("/notebooks/renamed%20nb.ipynb")
    with api(ui_server) as c:
        assert c.get("/api/contents/renamed%20nb.ipynb").status_code == 200
        assert c.get(f"/api/contents/{path}").status_code == 404
        sessions = c.get("/api/sessions").json()
        assert any(s["path"] == "renamed nb.ipynb" for s in sessions)
    # The kernel (and its state) carried over.
    run_in_new_cell(page, "print(kept)")
    page.wait_for_selector(".zh-cell >> nth=1 >> .zh-output-stream:has-text('yes')")


def test_failures_are_explained_and_lose_nothing(page, ui_server: ServerProcess) -> None:
    page.goto(f"{ui_server.url}/notebooks/no/such.ipynb")
    page.wait_for_selector(".zh-error-page:has-text('Could not open this page')")
    assert "no/such.ipynb" in page.inner_text(".zh-error-page") or "not found" in page.inner_text(".zh-error-page").lower()

    page.goto(f"{ui_server.url}/tree")
    new_notebook(page)
    type_in_active_cell(page, "precious = 'work'")

    # Fault injection: the server's disk is full for one save.
    def disk_full(route) -> None:
        if route.request.method == "PUT":
            route.fulfill(status=507, content_type="application/json", body='{"message": "No space left on device", "reason": "Insufficient Storage"}')
        else:
            route.continue_()

    page.route("**/api/contents/**", disk_full)
    page.keyboard.press("Control+s")
    page.wait_for_selector(".zh-toast-error:has-text('No space left on device')")
    assert page.get_attribute(".zh-save-state", "data-dirty") == "true"
    page.unroute("**/api/contents/**")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".zh-save-state[data-dirty=false]")
    path = page.inner_text(".zh-title")
    with api(ui_server) as c:
        assert c.get(f"/api/contents/{path}").json()["content"]["cells"][0]["source"] == "precious = 'work'"

    # A name with "/" is refused with a message, and nothing is renamed.
    page.click(".zh-title")
    page.fill(".zh-dialog input", "a/b")
    page.keyboard.press("Enter")
    page.wait_for_selector(".zh-toast-error:has-text('cannot contain')")
    assert page.inner_text(".zh-title") == path
