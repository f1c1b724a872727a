"""Choosing a storage backend from a URL, importing it only when asked.

`open_contents("s3://bucket/prefix", root_dir=…, parent=app)` looks up the
scheme in the entry-point group `zasperhub.contents` (third parties add
backends there), imports that class — so boto3 or googleapiclient are loaded
only when configured — and wraps it in the shared `ContentsManager`.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlparse

from zasperhub.contents.base import Backend
from zasperhub.contents.manager import ContentsManager

GROUP = "zasperhub.contents"

#: The extra that installs each bundled backend's dependencies.
EXTRAS = {"s3": "s3", "gdrive": "gdrive"}


class ContentsConfigError(ValueError):
    """The contents URL names no usable backend; the message says what to do."""


def scheme_of(url: str) -> str:
    """The backend name for `url` ("" and plain paths mean local disk)."""
    if not url:
        return "file"
    scheme = urlparse(url).scheme.lower()
    # A bare path (or a Windows drive letter) is a local directory.
    return scheme if len(scheme) > 1 else "file"


def backend_class(scheme: str) -> type[Backend]:
    """The backend class registered for `scheme`, imported now."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == scheme]
    if not found:
        known = sorted({ep.name for ep in entry_points(group=GROUP)})
        raise ContentsConfigError(f"No contents backend for {scheme}:// (known: {', '.join(known) or 'none'})")
    try:
        cls = found[0].load()
    except ImportError as e:
        raise ContentsConfigError(_missing(scheme, e)) from e
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ContentsConfigError(f"Entry point {found[0].value} for {scheme}:// is not a Backend class")
    return cls


def open_backend(url: str, *, root_dir: str, parent: Any = None) -> Backend:
    """The backend for `url` (empty or file:// → `root_dir` on local disk)."""
    cls = backend_class(scheme_of(url))
    if scheme_of(url) == "file" and url and "://" not in url:
        url = "file://" + url  # a bare directory path
    try:
        return cls.from_url(url, root_dir=root_dir, parent=parent)  # type: ignore[attr-defined]
    except ImportError as e:  # backends may import their SDK only here
        raise ContentsConfigError(_missing(scheme_of(url), e)) from e
    except (ValueError, OSError) as e:
        raise ContentsConfigError(f"Cannot open contents at {_redact(url)}: {e}") from e


def _missing(scheme: str, error: ImportError) -> str:
    extra = EXTRAS.get(scheme)
    hint = f"; install it with: pip install 'zasperhub[{extra}]'" if extra else ""
    return f"The {scheme}:// contents backend cannot be imported ({error}){hint}"


def open_contents(url: str, *, root_dir: str, parent: Any = None) -> ContentsManager:
    """The contents manager the server uses, over the backend named by `url`."""
    backend = open_backend(url, root_dir=root_dir, parent=parent)
    return ContentsManager(backend, parent=parent)


def _redact(url: str) -> str:
    """`url` without any user:password part."""
    parsed = urlparse(url)
    if parsed.password or parsed.username:
        host = parsed.hostname or ""
        if parsed.port:
            host += f":{parsed.port}"
        return parsed._replace(netloc=host).geturl()
    return url
