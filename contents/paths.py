"""API path rules shared by the contents layer and its handlers.

An API path is "/"-separated and relative to the store's root ("" is the
root).  Anything that could name a place outside the root — "..", ".",
absolute paths, backslashes, NUL — is refused with `ValueError` (HTTP 400)
before any backend sees it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

_DRIVE = re.compile(r"^[A-Za-z]:$")


def normalize_path(path: object) -> str:
    """The canonical form of an API path, or `ValueError` naming the problem.

    One leading slash (as in URLs) and trailing slashes (directory URLs)
    are dropped; every other irregularity is an error, never "repaired".
    """
    if path is None:
        return ""
    if not isinstance(path, str):
        raise ValueError(f"Path must be a string, not {type(path).__name__}")
    if "\0" in path:
        raise ValueError("Path must not contain NUL characters")
    if "\\" in path:
        raise ValueError(f"Path must not contain backslashes: {path!r}")
    if path.startswith("/"):
        path = path[1:]
    if path.startswith("/"):
        raise ValueError(f"Absolute paths are not allowed: {path!r}")
    path = path.rstrip("/")
    if not path:
        return ""
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"Invalid path (empty, '.' or '..' segment): {path!r}")
    if _DRIVE.match(parts[0]):
        raise ValueError(f"Absolute paths are not allowed: {path!r}")
    return path


def split_path(path: str) -> tuple[str, str]:
    """`("dir/sub", "name")` for "dir/sub/name"; `("", "name")` at the root."""
    if "/" in path:
        parent, name = path.rsplit("/", 1)
        return parent, name
    return "", path


def join_path(parent: str, name: str) -> str:
    """`name` inside directory `parent`."""
    return f"{parent}/{name}" if parent else name


def is_hidden(path: str) -> bool:
    """True if any component of `path` is a dotfile."""
    return any(part.startswith(".") for part in path.split("/") if part)


def matches_any(name: str, globs: Iterable[str]) -> bool:
    """True if `name` matches one of the shell-style `globs`."""
    return any(fnmatch.fnmatch(name, g) for g in globs)


def increment_name(filename: str, taken: set[str], insert: str = "") -> str:
    """The first of `filename`, `base{insert}1.ext`, `base{insert}2.ext`… not in `taken`.

    As in Jupyter, the counter goes before the first dot ("a.tar.gz" →
    "a1.tar.gz") except for notebooks, where it goes before ".ipynb".
    """
    base, dot, ext = filename.rpartition(".")
    if ext != "ipynb":
        base, dot, ext = filename.partition(".")
    suffix = dot + ext
    for i in range(len(taken) + 2):
        name = f"{base}{insert}{i}{suffix}" if i else f"{base}{suffix}"
        if name not in taken:
            return name
    raise AssertionError("unreachable: more candidates than taken names")
