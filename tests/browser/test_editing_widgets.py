"""End to end: JupyterLab-style multi-cell editing (selection, merge,
split, undo) and ipywidgets talking to a real kernel over comms."""

from __future__ import annotations

from tests.browser.conftest import shot
from tests.browser.helpers import (
    cell,
    new_notebook,
    run_in_new_cell,
    type_in_active_cell,
    wait_cell_done,
)


def sources(page) -> list[str]:
    """Every cell's source text as shown (textContent: off-screen cells skip rendering, so no innerText)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('.zh-cell')].map((c) => {
            const lines = c.querySelectorAll('.cm-content .cm-line');
            const text = lines.length ? [...lines].map((l) => l.textContent).join('\\n') : (c.querySelector('.zh-source')?.textContent ?? '');
            return text.trim();
        })"""
    )


def delete_with_two_above(page) -> None:
    """Extend the selection two cells up (Shift+Up twice) and delete it (D, D)."""
    for key in ("Shift+ArrowUp", "Shift+ArrowUp", "d", "d"):
        page.keyboard.press(key)

def test_multi_cell_selection_merge_split_and_undo(page, ui_server) -> None:
    new_notebook(page)
    type_in_active_cell(page, "a = 1")
    page.keyboard.press("Escape")
    for text in ("b = 2", "c = 3", "print(a + b + c)"):
        page.keyboard.press("b")
        page.keyboard.insert_text(text)
        page.keyboard.press("Escape")
    assert page.locator(".zh-cell").count() == 4

    # Shift+Up twice from the last cell: three cells selected.
    page.keyboard.press("Shift+ArrowUp")
    page.keyboard.press("Shift+k")
    assert page.locator(".zh-cell.zh-selected").count() == 3
    # Copy and paste the whole selection below it.
    page.keyboard.press("c")
    page.keyboard.press("v")
    assert page.locator(".zh-cell").count() == 7
    assert sources(page)[4:7] == ["b = 2", "c = 3", "print(a + b + c)"]
    # Select the three pasted cells and delete them at once; one Z brings all back.
    delete_with_two_above(page)
    assert page.locator(".zh-cell").count() == 4
    page.keyboard.press("z")
    assert page.locator(".zh-cell").count() == 7
    assert sources(page)[4:7] == ["b = 2", "c = 3", "print(a + b + c)"]
    # The last restored cell is active: select the three again and delete them for good.
    delete_with_two_above(page)
    assert page.locator(".zh-cell").count() == 4
    assert sources(page) == ["a = 1", "b = 2", "c = 3", "print(a + b + c)"]

    # Shift+click selects a range; running it runs every selected cell.
    cell(page, 0).locator(".zh-prompt").click()
    cell(page, 3).locator(".zh-prompt").click(modifiers=["Shift"])
    assert page.locator(".zh-cell.zh-selected").count() == 4
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".zh-cell >> nth=3 >> .zh-output-stream:has-text('6')")
    for i in range(4):
        wait_cell_done(page, i)

    # Move the selection (cells 1-2) down one as a block.
    cell(page, 1).locator(".zh-prompt").click()
    page.keyboard.press("Shift+j")
    page.click("button[title='Move cell down']")
    assert sources(page) == ["a = 1", "print(a + b + c)", "b = 2", "c = 3"]
    assert page.locator(".zh-cell.zh-selected").count() == 2
    shot(page, "13-multi-cell-selection")

    # Shift+M merges the selection; with one cell selected, merges with the one below.
    page.keyboard.press("Shift+m")
    assert sources(page)[:2] == ["a = 1", "print(a + b + c)"]
    assert page.locator(".zh-cell").count() == 3
    # (An empty line renders as <br>: innerText doubles it, so compare the non-empty lines.)
    assert sources(page)[2].split() == ["b", "=", "2", "c", "=", "3"]
    assert page.locator(".zh-cell >> nth=2 >> .cm-line").count() == 3  # joined by an empty line
    cell(page, 0).locator(".zh-prompt").click()
    page.keyboard.press("Shift+M")
    assert page.locator(".zh-cell").count() == 2
    assert page.locator(".zh-cell >> nth=0 >> .zh-output").count() == 0  # stale outputs dropped

    # Ctrl+Shift+- splits at the cursor in edit mode.
    editor = cell(page, 1).locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+Home")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")  # start of "c = 3"
    page.keyboard.press("Control+Shift+Minus")
    assert page.locator(".zh-cell").count() == 3
    assert sources(page)[1:] == ["b = 2", "c = 3"]
    assert page.evaluate("() => document.activeElement.closest('.zh-cell') === document.querySelectorAll('.zh-cell')[2]")
    page.keyboard.press("Escape")
    assert page.locator(".zh-cell >> nth=1 >> .cm-line").count() == 1  # no blank line left at the cut


SLIDER = "import ipywidgets as w\ns = w.IntSlider(value=10, min=0, max=100, description='level')\ns"
INTERACT = (
    "from ipywidgets import interact\n"
    "@interact(n=(0, 20))\n"
    "def square(n=5):\n"
    "    print('square is', n * n)"
)
BUTTON = (
    "out = w.Output()\n"
    "t = w.Text(value='typed')\n"
    "b = w.Button(description='Press me')\n"
    "def pressed(_):\n"
    "    with out:\n"
    "        print('pressed with', t.value)\n"
    "b.on_click(pressed)\n"
    "display(t, b, out)"
)


def run_in_cell(page, index: int, code: str) -> None:
    """Type into cell `index` (clicking a widget selects its cell, so say which) and run it."""
    cell(page, index).locator(".cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(code)
    page.keyboard.press("Shift+Enter")


def test_ipywidgets_slider_interact_button(page, ui_server) -> None:
    csp: list[str] = []
    page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text or "Refused to" in m.text else None)
    new_notebook(page)
    widget_js = []
    page.on("request", lambda r: widget_js.append(r.url) if r.url.endswith(".js") else None)

    run_in_new_cell(page, SLIDER)
    handle = page.wait_for_selector(".zh-cell >> nth=0 >> .widget-slider .noUi-handle", timeout=60_000)
    assert page.inner_text(".zh-cell >> nth=0 >> .widget-readout").strip() == "10"
    assert widget_js, "the widget chunk is loaded on demand"
    # Drag the handle to the right: the value changes in the kernel.
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + 120, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    page.wait_for_function("() => document.querySelector('.zh-cell .widget-readout').textContent.trim() !== '10'")
    shown = int(page.inner_text(".zh-cell >> nth=0 >> .widget-readout").strip())
    assert shown > 10
    # ipywidgets throttles updates (one in flight per model, the latest value
    # sent when the kernel is idle again), so an execute can overtake the last
    # drag update: read back until the final value has arrived.
    for _ in range(6):
        run_in_cell(page, 1, "print('kernel value', s.value)")
        wait_cell_done(page, 1)
        if f"kernel value {shown}" in page.inner_text(".zh-cell >> nth=1 >> .zh-outputs"):
            break
    else:
        raise AssertionError(f"the kernel never saw the slider's value {shown}: {page.inner_text('.zh-cell >> nth=1 >> .zh-outputs')}")
    # And the other way: the kernel sets the value, the slider follows.
    run_in_cell(page, 2, "s.value = 42")
    page.wait_for_function("() => document.querySelector('.zh-cell .widget-readout').textContent.trim() === '42'")

    # interact: the function's output sits in an Output widget and follows the slider.
    run_in_cell(page, 3, INTERACT)
    out = ".zh-cell >> nth=3 >> .zh-widget-output"
    page.wait_for_selector(f"{out} >> text=square is 25")
    readout = page.locator(".zh-cell >> nth=3 >> .widget-readout")
    readout.click()
    page.keyboard.press("Control+a")
    page.keyboard.type("7")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"{out} >> text=square is 49")
    assert "square is 25" not in page.inner_text(out)  # clear_output(wait=True) replaced it
    # Captured output goes to the widget, not the cell.
    assert page.locator(".zh-cell >> nth=3 >> .zh-output-stream:not(.zh-widget-output *)").count() == 0

    # Text + Button + Output: a click runs the handler in the kernel.
    run_in_cell(page, 4, BUTTON)
    text = page.wait_for_selector(".zh-cell >> nth=4 >> .widget-text input")
    text.fill("from the browser")
    text.press("Enter")
    page.click(".zh-cell >> nth=4 >> button:has-text('Press me')")
    page.wait_for_selector(".zh-cell >> nth=4 >> .zh-widget-output >> text=pressed with from the browser")
    shot(page, "14-widgets")

    page.keyboard.press("Control+s")
    page.wait_for_selector(".zh-save-state[data-dirty=false]")

    # After a reload the kernel still has the widgets: they come back live.
    page.reload()
    page.wait_for_function("() => document.querySelector('.zh-cell .widget-readout')?.textContent.trim() === '42'", timeout=60_000)
    run_in_cell(page, 2, "s.value = 7")
    page.wait_for_function("() => document.querySelector('.zh-cell .widget-readout').textContent.trim() === '7'")
    assert not csp, f"CSP violations: {csp}"
