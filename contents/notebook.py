"""Notebook (de)serialisation for the contents layer.

Reading uses orjson and converts the on-disk form (multi-line strings
stored as lists of lines) to the in-memory form clients expect (one
string), as nbformat's v4 reader does.  Writing produces the same bytes
nbformat writes (sorted keys, one-space indent, lines split, trailing
newline) so files diff cleanly against Jupyter's.  nbformat itself is
imported only to upgrade old notebooks and to validate on save, never at
server start.
"""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any

import orjson

#: String-valued mime types written as lists of lines (besides text/*).
_SPLIT_MIMES = frozenset({"application/javascript", "image/svg+xml"})


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _rejoin_bundle(bundle: Any) -> None:
    if not isinstance(bundle, dict):
        return
    for key, value in bundle.items():
        if not _is_json_mime(key) and isinstance(value, list) and all(isinstance(v, str) for v in value):
            bundle[key] = "".join(value)


def _split_bundle(bundle: Any) -> None:
    if not isinstance(bundle, dict):
        return
    for key, value in bundle.items():
        if isinstance(value, str) and (key.startswith("text/") or key in _SPLIT_MIMES):
            bundle[key] = value.splitlines(True)


def _cells(nb: dict[str, Any]) -> list[dict[str, Any]]:
    cells = nb.get("cells")
    return [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []


def _outputs(cell: dict[str, Any]) -> list[dict[str, Any]]:
    outputs = cell.get("outputs") if cell.get("cell_type") == "code" else None
    return [o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []


def rejoin_lines(nb: dict[str, Any]) -> dict[str, Any]:
    """In place: multi-line fields stored as lists of lines become single strings."""
    for cell in _cells(nb):
        source = cell.get("source")
        if isinstance(source, list) and all(isinstance(s, str) for s in source):
            cell["source"] = "".join(source)
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for bundle in attachments.values():
                _rejoin_bundle(bundle)
        for output in _outputs(cell):
            if output.get("output_type") in ("execute_result", "display_data"):
                _rejoin_bundle(output.get("data"))
            elif isinstance(output.get("text"), list) and all(isinstance(s, str) for s in output["text"]):
                output["text"] = "".join(output["text"])
    return nb


def _split_bundle_copy(bundle: Any) -> Any:
    if not isinstance(bundle, dict):
        return bundle
    out = dict(bundle)
    _split_bundle(out)
    return out


def _split_output(output: Any) -> Any:
    if not isinstance(output, dict):
        return output
    kind = output.get("output_type")
    if kind in ("execute_result", "display_data") and isinstance(output.get("data"), dict):
        return {**output, "data": _split_bundle_copy(output["data"])}
    if kind == "stream" and isinstance(output.get("text"), str):
        return {**output, "text": output["text"].splitlines(True)}
    return output


def _split_cell(cell: Any) -> Any:
    if not isinstance(cell, dict):
        return cell
    cell = dict(cell)
    if isinstance(cell.get("metadata"), dict) and "trusted" in cell["metadata"]:
        cell["metadata"] = {k: v for k, v in cell["metadata"].items() if k != "trusted"}
    if isinstance(cell.get("source"), str):
        cell["source"] = cell["source"].splitlines(True)
    if isinstance(cell.get("attachments"), dict):
        cell["attachments"] = {k: _split_bundle_copy(v) for k, v in cell["attachments"].items()}
    if cell.get("cell_type") == "code" and isinstance(cell.get("outputs"), list):
        cell["outputs"] = [_split_output(o) for o in cell["outputs"]]
    return cell


def _for_disk(nb: dict[str, Any]) -> dict[str, Any]:
    """A copy of `nb` in its on-disk form: lines split, transient keys dropped.

    Only the containers on the way to a changed value are copied: outputs
    can be megabytes, and a deep copy of everything would double the work.
    """
    out = dict(nb)
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k not in _TRANSIENT_NB_KEYS}
    if isinstance(out.get("cells"), list):
        out["cells"] = [_split_cell(c) for c in out["cells"]]
    return out


_TRANSIENT_NB_KEYS = frozenset({"orig_nbformat", "orig_nbformat_minor", "signature"})


def parse_notebook(data: bytes, path: str) -> dict[str, Any]:
    """The notebook stored as `data`, upgraded to v4, or `ValueError` if unreadable."""
    try:
        nb = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"Unreadable Notebook: {path} {e}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("nbformat"), int):
        raise ValueError(f"Unreadable Notebook: {path} is not a notebook (no nbformat)")
    if nb["nbformat"] != 4:
        nb = upgrade(nb, path)
    return rejoin_lines(nb)


def upgrade(nb: dict[str, Any], path: str) -> dict[str, Any]:
    """Convert an older (v1–v3) notebook to v4 with nbformat."""
    import nbformat  # heavy; only old notebooks need it

    try:
        node = nbformat.reads(json.dumps(nb), as_version=4)
    except Exception as e:  # nbformat raises many kinds for bad input
        raise ValueError(f"Unreadable Notebook: {path} {e}") from None
    return orjson.loads(orjson.dumps(node))


def check_notebook(content: Any, path: str) -> dict[str, Any]:
    """The `content` of a notebook save, upgraded to v4, or `ValueError`."""
    if not isinstance(content, dict):
        raise ValueError(f"Notebook content for {path} must be a JSON object")
    version = content.get("nbformat")
    if not isinstance(version, int):
        raise ValueError(f"Notebook content for {path} has no nbformat version")
    if version > 4:
        raise ValueError(f"Notebook {path} has unsupported nbformat {version}")
    return content if version == 4 else upgrade(content, path)


def serialize_notebook(nb: dict[str, Any]) -> bytes:
    """The bytes nbformat would write for `nb` (which is left unchanged)."""
    text = json.dumps(_for_disk(nb), sort_keys=True, indent=1, separators=(",", ": "), ensure_ascii=False)
    return (text + "\n").encode("utf-8", "surrogateescape")


def new_notebook() -> dict[str, Any]:
    """An empty v4 notebook, as Jupyter creates for "New Notebook"."""
    return {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def validation_message(nb: dict[str, Any]) -> str | None:
    """nbformat's schema verdict on `nb`: None if valid, else a short message.

    A notebook that fails validation is still saved (as Jupyter does); the
    message tells the client what is wrong.
    """
    import nbformat  # heavy; imported on first notebook save only
    from nbformat.validator import ValidationError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(copy.deepcopy(nb))
    except ValidationError as e:
        return f"Notebook validation failed: {e.message}"
    except Exception as e:  # an unknown nbformat_minor etc.
        return f"Notebook validation failed: {e}"
    return None
