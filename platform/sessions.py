"""Sessions: the link between a notebook (or console/file) path and a kernel.

Kept in memory, like the kernels they point to (a server restart loses both).
Models have Jupyter Server 2.x's shape::

    {"id", "path", "name", "type", "kernel": <kernel model>, "notebook": {"path", "name"}}

(`notebook` only for type "notebook").  A session whose kernel is gone (shut
down, culled, died past its restart limit) disappears from listings.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import posixpath
import uuid
from typing import Any

from traitlets import Any as AnyTrait
from traitlets import Unicode
from traitlets.config import LoggingConfigurable
from zasperhub.platform.kernels.registry import KernelRegistry


@dataclasses.dataclass
class Session:
    id: str
    path: str
    name: str
    type: str
    kernel_id: str


class SessionManager(LoggingConfigurable):
    """Creates, lists, updates and deletes sessions."""

    kernel_registry = AnyTrait()
    contents_manager = AnyTrait(allow_none=True)
    root_dir = Unicode("", help="Fallback kernel directory when the store has no local one.")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sessions: dict[str, Session] = {}
        # Serializes create-by-path so two racing POSTs for one notebook share a kernel.
        self._lock = asyncio.Lock()

    @property
    def kernels(self) -> KernelRegistry:
        return self.kernel_registry

    # -- helpers -----------------------------------------------------------------
    def kernel_cwd(self, path: str) -> str:
        """The local directory a kernel for `path` starts in."""
        directory = posixpath.dirname(path.strip("/"))
        local = None
        cm = self.contents_manager
        if cm is not None and hasattr(cm, "local_dir"):
            try:
                local = cm.local_dir(directory)
            except (OSError, ValueError):
                local = None
            if local is None and directory:
                # The notebook's folder may not exist locally (new file); fall back to the root.
                local = cm.local_dir("")
        if local and os.path.isdir(local):
            return local
        return self.root_dir or getattr(self.kernels, "root_dir", "") or os.getcwd()

    def _model(self, session: Session) -> dict[str, Any]:
        model: dict[str, Any] = {
            "id": session.id,
            "path": session.path,
            "name": session.name,
            "type": session.type,
            "kernel": self.kernels.model(session.kernel_id),
        }
        if session.type == "notebook":
            model["notebook"] = {"path": session.path, "name": session.name}
        return model

    def _prune(self) -> None:
        for sid, session in list(self._sessions.items()):
            if session.kernel_id not in self.kernels:
                del self._sessions[sid]

    def _get(self, session_id: str) -> Session:
        self._prune()
        try:
            return self._sessions[session_id]
        except KeyError:
            raise KeyError(f"Session not found: {session_id}") from None

    async def start_kernel_for(self, path: str, kernel_name: str | None) -> str:
        env = {"JPY_SESSION_NAME": path}
        return await self.kernels.start_kernel(kernel_name, cwd=self.kernel_cwd(path), env=env)

    # -- API -----------------------------------------------------------------------
    def list_sessions(self) -> list[dict[str, Any]]:
        self._prune()
        return [self._model(s) for s in self._sessions.values()]

    def get_session(self, session_id: str) -> dict[str, Any]:
        return self._model(self._get(session_id))

    def find_by_path(self, path: str) -> dict[str, Any] | None:
        self._prune()
        for session in self._sessions.values():
            if session.path == path:
                return self._model(session)
        return None

    async def create_session(
        self, path: str, type: str, name: str | None = None, kernel_name: str | None = None, kernel_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The session for `path` — an existing one, or a new one with a kernel.

        Returns (model, created).  `kernel_id` attaches an existing kernel
        (`KeyError` if unknown); otherwise a kernel of `kernel_name` starts.
        """
        async with self._lock:
            existing = self.find_by_path(path)
            if existing is not None:
                return existing, False
            if kernel_id:
                self.kernels.get(kernel_id)
            else:
                kernel_id = await self.start_kernel_for(path, kernel_name)
            session = Session(str(uuid.uuid4()), path, name or posixpath.basename(path), type, kernel_id)
            self._sessions[session.id] = session
            return self._model(session), True

    async def update_session(self, session_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Rename the path/name/type or switch the kernel; the replaced kernel is shut down
        unless another session still uses it."""
        session = self._get(session_id)
        old_kernel = session.kernel_id
        kernel = changes.get("kernel")
        new_kernel: str | None = None
        if kernel is not None:
            if not isinstance(kernel, dict):
                raise ValueError("kernel must be an object with an id or a name")
            if kernel.get("id"):
                if kernel["id"] not in self.kernels:
                    raise ValueError(f"No such kernel: {kernel['id']}")
                new_kernel = kernel["id"]
            elif kernel.get("name"):
                try:
                    new_kernel = await self.start_kernel_for(changes.get("path") or session.path, kernel["name"])
                except KeyError as e:
                    # Not a missing session: a bad request (400), not a 404.
                    raise ValueError(str(e.args[0]) if e.args else "No such kernel spec") from None
        for key in ("path", "name", "type"):
            value = changes.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise ValueError(f"{key} must be a string")
                setattr(session, key, value)
        if new_kernel is not None and new_kernel != old_kernel:
            session.kernel_id = new_kernel
            still_used = any(s.kernel_id == old_kernel for s in self._sessions.values())
            if not still_used and old_kernel in self.kernels:
                await self.kernels.shutdown_kernel(old_kernel)
        return self._model(session)

    async def delete_session(self, session_id: str) -> None:
        """Remove the session and shut its kernel down (unless shared)."""
        session = self._get(session_id)
        del self._sessions[session_id]
        if any(s.kernel_id == session.kernel_id for s in self._sessions.values()):
            return
        if session.kernel_id in self.kernels:
            await self.kernels.shutdown_kernel(session.kernel_id)
