"""Notebook bytes match nbformat's; old notebooks are upgraded on read."""

from __future__ import annotations

import json

import nbformat
import pytest

from zasperhub.contents import notebook as nbio

SAMPLE = {
    "cells": [
        {"cell_type": "markdown", "id": "m1", "metadata": {"trusted": True}, "source": "# Title\n\nSome *text* ü\n",
         "attachments": {"a.png": {"image/png": "iVBORw0KGgo=", "text/plain": "line1\nline2"}}},
        {"cell_type": "code", "execution_count": 3, "id": "c1", "metadata": {}, "source": "print('a')\nx",
         "outputs": [
             {"name": "stdout", "output_type": "stream", "text": "a\nb\n"},
             {"output_type": "execute_result", "execution_count": 3, "metadata": {},
              "data": {"text/plain": "1\n2", "application/json": {"k": [1, 2]}, "image/svg+xml": "<svg>\n</svg>"}},
             {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]},
         ]},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}, "signature": "x"},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def test_bytes_match_nbformat_and_roundtrip() -> None:
    ours = nbio.serialize_notebook(SAMPLE)
    theirs = (nbformat.writes(nbformat.from_dict(json.loads(json.dumps(SAMPLE))), version=4) + "\n").encode()
    assert ours == theirs
    back = nbio.parse_notebook(ours, "x.ipynb")
    expected = json.loads(json.dumps(SAMPLE))
    del expected["metadata"]["signature"]
    del expected["cells"][0]["metadata"]["trusted"]
    assert back == expected
    assert SAMPLE["metadata"]["signature"] == "x"  # the caller's dict is left alone


def test_v3_notebook_is_upgraded() -> None:
    v3 = {
        "metadata": {"name": ""}, "nbformat": 3, "nbformat_minor": 0,
        "worksheets": [{"cells": [{"cell_type": "code", "input": "1+1", "language": "python", "outputs": [], "metadata": {}}], "metadata": {}}],
    }
    nb = nbio.parse_notebook(json.dumps(v3).encode(), "old.ipynb")
    assert nb["nbformat"] == 4 and nb["cells"][0]["source"] == "1+1"


@pytest.mark.parametrize("data", [b"", b"[]", b'{"cells": []}', b"\xff\xfe", b'{"nbformat": "4"}'])
def test_unreadable(data: bytes) -> None:
    with pytest.raises(ValueError, match="Unreadable Notebook"):
        nbio.parse_notebook(data, "bad.ipynb")


def test_validation_message() -> None:
    assert nbio.validation_message(nbio.new_notebook()) is None
    bad = nbio.new_notebook()
    bad["cells"] = [{"cell_type": "code", "source": "", "metadata": {}}]  # no outputs, no id
    assert nbio.validation_message(bad).startswith("Notebook validation failed")
