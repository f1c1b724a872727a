"""Pluggable storage: the backend contract, the shared contents model, backends.

Importing this package stays cheap: backends (and their SDKs) load only
through `zasperhub.contents.registry` when configured.
"""

from zasperhub.contents.base import Backend, PreconditionFailed, Stat, StorageUnavailable, Upload
from zasperhub.contents.manager import ContentsManager
from zasperhub.contents.registry import ContentsConfigError, open_contents

__all__ = [
    "Backend",
    "ContentsConfigError",
    "ContentsManager",
    "PreconditionFailed",
    "Stat",
    "StorageUnavailable",
    "Upload",
    "open_contents",
]
