"""Per-user names derived from JupyterHub user names.

JupyterHub allows almost any character in a user name; S3 key prefixes, IAM
user names and Kubernetes object names each allow less.  These helpers give a
stable, collision-free spelling for each context: names that are already safe
are kept readable, anything else gets a short hash so two different users can
never map to the same prefix or identity.
"""

from __future__ import annotations

import hashlib
import re

_SAFE = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]


def safe_username(name: str) -> str:
    """A lowercase `[a-z0-9._-]` spelling of `name`, unique per distinct name.

    Kept as is when already safe (and not ending in a dot or dash); otherwise
    the unsafe characters are replaced and a hash of the original is appended.
    """
    if _SAFE.fullmatch(name) and not name.endswith((".", "-")) and ".." not in name:
        return name
    cleaned = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "user"
    return f"{cleaned}-{_digest(name)}"


def iam_user_name(name: str, prefix: str = "zasper-") -> str:
    """An IAM user name (≤ 64 of `[A-Za-z0-9+=,.@_-]`) for hub user `name`."""
    return (prefix + safe_username(name))[:64]
