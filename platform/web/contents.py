"""`/api/contents`: the Jupyter Server 2.x contents REST API over `ContentsManager`.

Status codes follow Jupyter Server: 201 (with `Location`) for new untitled,
copy and upload of a new file; 200 for saving an existing file and rename;
204 for delete, restore checkpoint and delete checkpoint; 201 for creating a
checkpoint.  Paths are validated by the manager (400 for traversal) before
any storage call; storage errors become status codes in `web.base`.

Conflict detection (an extension; Jupyter clients simply never send it): a
PUT may carry the hash it last read, as an `If-Match` header or an
`expected_hash` body field; a stale one gets 409 and nothing is written.
"""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import quote

from tornado import web

from zasperhub.platform.web.base import APIHandler
from zasperhub.platform.web.util import url_path_join

_TYPES = frozenset({"directory", "file", "notebook"})


def _bool_arg(handler: APIHandler, name: str, default: str) -> bool:
    value = handler.get_query_argument(name, default)
    if value not in ("0", "1"):
        raise web.HTTPError(400, f"{name.capitalize()} argument {value!r} is invalid; it must be '0' or '1'")
    return value == "1"


class ContentsAPIHandler(APIHandler):
    """Shared helpers of the contents handlers."""

    auth_required = True

    @property
    def cm(self) -> Any:
        return self.zasper.contents_manager

    def location_url(self, path: str, *extra: str) -> str:
        return url_path_join(self.base_url, "api", "contents", quote(path, safe="/"), *extra)

    def finish_model(self, model: dict[str, Any], status: int = 200, *, location: bool = True) -> None:
        if location:
            self.set_header("Location", self.location_url(model["path"]))
        try:  # an HTTP date, as tornado formats datetimes
            modified = datetime.datetime.strptime(model["last_modified"], "%Y-%m-%dT%H:%M:%S.%fZ")
            self.set_header("Last-Modified", modified.replace(tzinfo=datetime.timezone.utc))
        except (KeyError, TypeError, ValueError):
            pass
        self.finish_json(model, status)

    def json_object(self) -> dict[str, Any] | None:
        """The JSON body, which must be an object when present."""
        body = self.get_json_body()
        if body is not None and not isinstance(body, dict):
            raise web.HTTPError(400, "The request body must be a JSON object")
        return body


class ContentsHandler(ContentsAPIHandler):
    """GET/PUT/POST/PATCH/DELETE `/api/contents/{path}`."""

    auth_required = True

    async def get(self, path: str | None = None) -> None:
        type_ = self.get_query_argument("type", None)
        if type_ not in (None, *_TYPES):
            type_ = "file"  # as Jupyter Server: unknown types read as files
        fmt = self.get_query_argument("format", None)
        if fmt not in (None, "text", "base64"):
            raise web.HTTPError(400, f"Format {fmt!r} is invalid")
        content = _bool_arg(self, "content", "1")
        want_hash = _bool_arg(self, "hash", "0")
        model = await self.cm.get(path or "", type=type_, format=fmt, content=content, require_hash=want_hash)
        self.finish_model(model, location=False)

    async def post(self, path: str | None = None) -> None:
        """New untitled file/notebook/folder in `path`, or a copy (`copy_from`)."""
        path = path or ""
        if await self.cm.file_exists(path):
            raise web.HTTPError(400, "Cannot POST to files, use PUT instead.")
        body = self.json_object() or {}
        copy_from = body.get("copy_from")
        if copy_from:
            model = await self.cm.copy(copy_from, path)
        else:
            type_ = body.get("type") or ""
            if type_ not in ("", *_TYPES):
                type_ = "file"
            model = await self.cm.new_untitled(path, type=type_, ext=body.get("ext") or "")
        self.finish_model(model, 201)

    async def put(self, path: str | None = None) -> None:
        """Save (200) or create (201) the file at `path` from the body's model."""
        path = path or ""
        body = self.json_object()
        if not body:
            model = await self.cm.new_untitled(path)
            self.finish_model(model, 201)
            return
        if body.get("copy_from"):
            raise web.HTTPError(400, "Cannot copy with PUT, only POST")
        if body.get("type") not in (None, "", *_TYPES):
            body["type"] = "file"
        expected = self.request.headers.get("If-Match") or body.pop("expected_hash", None)
        if isinstance(expected, str):
            expected = expected.strip().strip('"')
        elif expected is not None:
            raise web.HTTPError(400, "expected_hash must be a string")
        if await self.cm.exists(path):
            model = await self.cm.save(body, path, expected_hash=expected)
            self.finish_model(model, 200)
        elif expected is not None:
            raise web.HTTPError(409, f"{path} was deleted since it was read")
        else:
            model = await self.cm.new(body, path)
            self.finish_model(model, 201)

    async def patch(self, path: str | None = None) -> None:
        """Rename/move to the body's `path`."""
        body = self.json_object()
        if body is None:
            raise web.HTTPError(400, "JSON body missing")
        model = await self.cm.update(body, path or "")
        self.finish_model(model, 200)

    async def delete(self, path: str | None = None) -> None:
        await self.cm.delete(path or "")
        self.set_status(204)
        self.finish()


class CheckpointsHandler(ContentsAPIHandler):
    """GET (list) / POST (create) `/api/contents/{path}/checkpoints`."""

    auth_required = True

    async def get(self, path: str | None = None) -> None:
        self.finish_json(await self.cm.list_checkpoints(path or ""))

    async def post(self, path: str | None = None) -> None:
        checkpoint = await self.cm.create_checkpoint(path or "")
        self.set_header("Location", self.location_url(path or "", "checkpoints", quote(checkpoint["id"])))
        self.finish_json(checkpoint, 201)


class ModifyCheckpointsHandler(ContentsAPIHandler):
    """POST (restore) / DELETE `/api/contents/{path}/checkpoints/{id}`."""

    auth_required = True

    async def post(self, path: str | None, checkpoint_id: str) -> None:
        await self.cm.restore_checkpoint(checkpoint_id, path or "")
        self.set_status(204)
        self.finish()

    async def delete(self, path: str | None, checkpoint_id: str) -> None:
        await self.cm.delete_checkpoint(checkpoint_id, path or "")
        self.set_status(204)
        self.finish()


class NotebooksRedirectHandler(APIHandler):
    """The old `/api/notebooks/…` URLs point to `/api/contents/…`."""

    auth_required = False

    def get(self, path: str) -> None:
        self.redirect(url_path_join(self.base_url, "api", "contents", quote(path, safe="/")))

    put = patch = post = delete = get


# The path group is deliberately permissive ("/.*"): a traversal attempt must
# reach the manager and get a 400, not fall through to a 404.
handlers = [
    (r"/api/contents(/.*)?/checkpoints/([\w-]+)", ModifyCheckpointsHandler),
    (r"/api/contents(/.*)?/checkpoints/?", CheckpointsHandler),
    (r"/api/contents(/.*)?", ContentsHandler),
    (r"/api/notebooks/?(.*)", NotebooksRedirectHandler),
]
