"""Small helpers shared by handlers: timestamps and URL joining."""

from __future__ import annotations

import datetime


def utcnow() -> datetime.datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.datetime.now(datetime.timezone.utc)


def isoformat_z(dt: datetime.datetime) -> str:
    """ISO 8601 exactly as Jupyter clients parse it: `%Y-%m-%dT%H:%M:%S.%fZ`.

    (Jupyter Server's GatewayClient raises on a `+00:00` suffix.)
    """
    if dt.tzinfo is not None:
        dt = dt.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def url_path_join(*parts: str) -> str:
    """Join URL path pieces with exactly one slash between them."""
    if not parts:
        return ""
    joined = "/".join(p.strip("/") for p in parts if p.strip("/"))
    if parts[0].startswith("/"):
        joined = "/" + joined
    if parts[-1].endswith("/") and not joined.endswith("/"):
        joined += "/"
    return joined or "/"
