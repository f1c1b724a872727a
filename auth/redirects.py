"""Validation of post-login redirect targets (no open redirects).

After a login the browser is sent to `next`; an attacker controls that
value in a crafted link, so only same-origin paths below the server's base
URL are accepted and anything else falls back to the base URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

#: A `next` longer than this is not a real page of ours.
MAX_NEXT_LENGTH = 2048


def safe_next_url(candidate: str | None, base_url: str) -> str:
    """`candidate` if it is a local path under `base_url`, else `base_url`."""
    if not candidate or len(candidate) > MAX_NEXT_LENGTH:
        return base_url
    # Browsers treat "\\" like "/" and drop control characters, so
    # "/\\evil.com" or "/\t/evil.com" would leave the origin.
    if "\\" in candidate or any(ord(c) < 0x20 or ord(c) == 0x7F for c in candidate):
        return base_url
    if not candidate.startswith("/") or candidate.startswith("//"):
        return base_url
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return base_url
    path = parts.path
    prefix = base_url if base_url.endswith("/") else base_url + "/"
    if not (path + "/").startswith(prefix) and path != prefix.rstrip("/"):
        return base_url
    # Dot segments could climb out of the base URL once the browser
    # normalises them.
    if any(seg in (".", "..") for seg in path.split("/")) or "%2e" in path.lower():
        return base_url
    return candidate
