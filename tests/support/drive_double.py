"""A local Google Drive v3 REST API double for tests (tornado on 127.0.0.1).

It follows the documented wire behaviour closely enough for the real
google-api-python-client and google-auth to run unmodified against it:

- `POST /token`: OAuth token endpoint (refresh_token grant, and the JWT bearer
  grant used by service accounts, whose signature is checked);
- `files.list` with `q`, `fields`, `pageSize` (≤ 1000) / `pageToken` paging;
- `files.get` (metadata, `alt=media` with `Range`), `files.create`
  (metadata-only, `uploadType=multipart|media|resumable`), `files.update`
  (metadata PATCH with addParents/removeParents, media via `/upload/…`),
  `files.copy`, `files.delete` (204), `files.generateIds`;
- resumable sessions: a `Location` to PUT chunks to, `Content-Range`,
  `308 Resume Incomplete` with `Range`, status queries (`bytes */N`), the file
  appearing only when the last byte arrives;
- `changes.getStartPageToken` / `changes.list`;
- errors in Drive's JSON shape; 401 for unknown or expired bearer tokens.

Fault injection: `fail_next(n, status)` and `expire_tokens()`; `requests`
records (method, path, query) for assertions.  State is in memory, guarded by
a lock so tests can seed or change files "behind the backend's back".
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web

FOLDER = "application/vnd.google-apps.folder"
CHUNK_GRANULARITY = 256 * 1024


class DriveError(Exception):
    """An error answered in Drive's JSON error shape."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "errors": [{"domain": "global", "reason": self.reason, "message": self.message}]}}


_last_time = [datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)]
_time_lock = threading.Lock()


def _now() -> str:
    """RFC 3339 with milliseconds, like Drive; strictly increasing so creation order is observable."""
    with _time_lock:
        now = max(datetime.datetime.now(datetime.timezone.utc), _last_time[0] + datetime.timedelta(milliseconds=1))
        _last_time[0] = now
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return "1" + secrets.token_urlsafe(24)[:32]


class DriveDouble:
    """The double's state plus its server thread; use `start()` / `stop()`."""

    def __init__(self, *, token_lifetime: int = 3600) -> None:
        self.lock = threading.RLock()
        self.files: dict[str, dict[str, Any]] = {}
        self.content: dict[str, bytes] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, str] = {}  # client_id -> secret
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> client_id
        self.access_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.service_accounts: dict[str, Any] = {}  # email -> public key
        self.changes: list[str] = []  # file ids, in mutation order
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.token_lifetime = token_lifetime
        self._faults: list[tuple[int, Callable[[str, str], bool] | None, bool]] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._add({"id": "root", "name": "My Drive", "mimeType": FOLDER, "parents": []}, b"")

    # -- lifecycle --------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token_uri(self) -> str:
        return self.url + "token"

    def start(self) -> "DriveDouble":
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = tornado.web.Application(_routes(self))
            self._server = tornado.httpserver.HTTPServer(app, max_body_size=512 << 20, max_buffer_size=512 << 20)
            self._server.add_sockets(sockets)
            self._loop.call_soon(ready.set)
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="drive-double", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("drive double did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.stop()
            await self._server.close_all_connections()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    # -- credentials ------------------------------------------------------------
    def add_client(self) -> dict[str, str]:
        """A new OAuth client with one refresh token (authorized-user fields)."""
        with self.lock:
            client_id, secret, refresh = secrets.token_hex(8), secrets.token_hex(16), secrets.token_hex(16)
            self.clients[client_id] = secret
            self.refresh_tokens[refresh] = client_id
            return {"client_id": client_id, "client_secret": secret, "refresh_token": refresh,
                    "token_uri": self.token_uri, "type": "authorized_user"}

    def issue_token(self, lifetime: float | None = None) -> str:
        with self.lock:
            token = "ya29." + secrets.token_urlsafe(24)
            self.access_tokens[token] = time.monotonic() + (self.token_lifetime if lifetime is None else lifetime)
            return token

    def add_service_account(self) -> dict[str, str]:
        """A service-account key file (dict) whose JWTs this double accepts."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"sa-{secrets.token_hex(4)}@double.iam.gserviceaccount.com"
        with self.lock:
            self.service_accounts[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        return {"type": "service_account", "project_id": "double", "private_key_id": secrets.token_hex(8),
                "private_key": pem.decode(), "client_email": email, "client_id": "1", "token_uri": self.token_uri}

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (refresh still works)."""
        with self.lock:
            self.access_tokens.clear()

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self.refresh_tokens.clear()

    # -- fault injection ----------------------------------------------------------
    def fail_next(self, count: int, status: int = 503, when: Callable[[str, str], bool] | None = None,
                  *, after: bool = False) -> None:
        """The next `count` API requests (matching `when(method, path)`) answer `status`.

        `after=True` makes the failure ambiguous: the request takes effect and
        only its JSON answer is replaced by the error (a lost response).
        """
        with self.lock:
            self._faults.extend([(status, when, after)] * count)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str) -> tuple[int, bool] | None:
        with self.lock:
            for i, (status, when, after) in enumerate(self._faults):
                if when is None or when(method, path):
                    del self._faults[i]
                    return status, after
        return None

    # -- state, for tests and handlers ----------------------------------------------
    def _add(self, meta: dict[str, Any], data: bytes) -> dict[str, Any]:
        now = _now()
        f = {"kind": "drive#file", "id": meta.get("id") or _new_id(), "name": meta.get("name", "Untitled"),
             "mimeType": meta.get("mimeType") or "application/octet-stream",
             "parents": list(meta.get("parents") or ["root"]), "trashed": False,
             "createdTime": now, "modifiedTime": now, "version": "1",
             "capabilities": {"canEdit": True, "canDownload": True}}
        self.files[f["id"]] = f
        if f["mimeType"] != FOLDER:
            self._set_content(f, data)
        self.changes.append(f["id"])
        return f

    def _set_content(self, f: dict[str, Any], data: bytes) -> None:
        self.content[f["id"]] = data
        f["size"] = str(len(data))
        f["md5Checksum"] = hashlib.md5(data).hexdigest()
        f["headRevisionId"] = secrets.token_hex(8)

    def touch(self, f: dict[str, Any]) -> None:
        f["modifiedTime"] = _now()
        f["version"] = str(int(f["version"]) + 1)
        self.changes.append(f["id"])

    def get(self, file_id: str) -> dict[str, Any]:
        f = self.files.get(file_id)
        if f is None:
            raise DriveError(404, "notFound", f"File not found: {file_id}.")
        return f

    def folder(self, name: str = "root-folder", parent: str = "root") -> str:
        with self.lock:
            return self._add({"name": name, "mimeType": FOLDER, "parents": [parent]}, b"")["id"]

    def put_file(self, name: str, parent: str, data: bytes = b"", mime: str = "text/plain") -> str:
        with self.lock:
            return self._add({"name": name, "mimeType": mime, "parents": [parent]}, data)["id"]

    def children(self, parent: str, *, include_trashed: bool = False) -> list[dict[str, Any]]:
        with self.lock:
            return [f for f in self.files.values() if parent in f["parents"] and (include_trashed or not f["trashed"])]

    def find(self, parent: str, name: str) -> dict[str, Any] | None:
        """The (first) untrashed child of `parent` called `name`."""
        return next((f for f in self.children(parent) if f["name"] == name), None)

    def rename(self, file_id: str, name: str | None = None, parent: str | None = None) -> None:
        """Change a file 'externally' (as the Drive web UI would)."""
        with self.lock:
            f = self.get(file_id)
            if name is not None:
                f["name"] = name
            if parent is not None:
                f["parents"] = [parent]
            self.touch(f)

    def remove(self, file_id: str) -> None:
        """Delete a file or folder tree permanently."""
        with self.lock:
            self.get(file_id)
            stack = [file_id]
            while stack:
                fid = stack.pop()
                stack.extend(c["id"] for c in self.files.values() if fid in c["parents"])
                self.files.pop(fid, None)
                self.content.pop(fid, None)
                self.changes.append(fid)

    def is_ancestor(self, maybe_ancestor: str, file_id: str) -> bool:
        seen: set[str] = set()
        stack = [file_id]
        while stack:
            fid = stack.pop()
            if fid == maybe_ancestor:
                return True
            if fid in seen or fid not in self.files:
                continue
            seen.add(fid)
            stack.extend(self.files[fid]["parents"])
        return False


def _routes(double: DriveDouble) -> list[tuple[str, type, dict[str, Any]]]:
    from tests.support.drive_double_handlers import ROUTES

    return [(pattern, handler, {"double": double}) for pattern, handler in ROUTES]


def query_args(handler: tornado.web.RequestHandler) -> dict[str, str]:
    return {k: v[-1].decode() for k, v in handler.request.query_arguments.items()}


def parse_jwt(assertion: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    head, payload, sig = assertion.split(".")
    pad = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
    return json.loads(pad(head)), json.loads(pad(payload)), f"{head}.{payload}".encode(), pad(sig)

