"""HTTP handlers of the Drive v3 double (state lives in `drive_double.DriveDouble`)."""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
from typing import Any

import tornado.web

from tests.support.drive_double import (
    CHUNK_GRANULARITY,
    FOLDER,
    DriveDouble,
    DriveError,
    parse_jwt,
    query_args,
)
from tests.support.drive_query import apply_fields, parse_fields, parse_query

DEFAULT_FILE_FIELDS = "kind,id,name,mimeType"


class _Base(tornado.web.RequestHandler):
    double: DriveDouble

    def initialize(self, double: DriveDouble) -> None:
        self.double = double
        self.args = query_args(self)
        self.fail_after: DriveError | None = None

    def check_xsrf_cookie(self) -> None:
        pass

    def prepare(self) -> None:
        d = self.double
        with d.lock:
            d.requests.append((self.request.method or "", self.request.path, dict(self.args)))
        fault = d.take_fault(self.request.method or "", self.request.path)
        if fault is not None:
            status, after = fault
            reason = {429: "rateLimitExceeded", 500: "backendError", 503: "backendError"}.get(status, "injected")
            err = DriveError(status, reason, f"Injected fault {status}")
            if after:
                self.fail_after = err
            else:
                self.fail(err)
                return
        if self.needs_auth:
            auth = self.request.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else ""
            with d.lock:
                expiry = d.access_tokens.get(token)
            if expiry is None or expiry < time.monotonic():
                self.set_header("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
                self.fail(DriveError(401, "authError", "Request had invalid authentication credentials."))

    needs_auth = True

    def fail(self, err: DriveError) -> None:
        self.set_status(err.code)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(err.body()))

    def reply(self, obj: Any, status: int = 200) -> None:
        if self.fail_after is not None:
            self.fail(self.fail_after)
            return
        with self.double.lock:  # obj may share dicts with the live state
            body = json.dumps(obj)
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)

    def reply_file(self, f: dict[str, Any], fields: str | None = None) -> None:
        self.reply(self.masked(f, fields if fields is not None else self.args.get("fields", DEFAULT_FILE_FIELDS)))

    @staticmethod
    def masked(f: dict[str, Any], fields: str) -> dict[str, Any]:
        try:
            # Answers are serialized at once and never mutated: no copy needed.
            return apply_fields(f, parse_fields(fields))
        except ValueError as e:
            raise DriveError(400, "invalidParameter", str(e)) from None

    def json_body(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise DriveError(400, "parseError", "Parse Error") from None
        if not isinstance(body, dict):
            raise DriveError(400, "parseError", "Parse Error")
        return body

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, DriveError):
            self.fail(e)
        else:
            super()._handle_request_exception(e)


def _check_parents(d: DriveDouble, parents: list[str]) -> None:
    for pid in parents:
        p = d.get(pid)
        if p["mimeType"] != FOLDER:
            raise DriveError(400, "invalidParent", f"Parent {pid} is not a folder.")


def _create(d: DriveDouble, meta: dict[str, Any], data: bytes, media_type: str | None) -> dict[str, Any]:
    with d.lock:
        if meta.get("id") and meta["id"] in d.files:
            raise DriveError(409, "duplicate", "A file already exists with the provided ID.")
        _check_parents(d, meta.get("parents") or ["root"])
        meta = dict(meta)
        if not meta.get("mimeType"):
            meta["mimeType"] = media_type or "application/octet-stream"
        return d._add(meta, data)


def _update(d: DriveDouble, file_id: str, meta: dict[str, Any], args: dict[str, str], data: bytes | None) -> dict[str, Any]:
    with d.lock:
        f = d.get(file_id)
        add = [p for p in args.get("addParents", "").split(",") if p]
        remove = [p for p in args.get("removeParents", "").split(",") if p]
        _check_parents(d, add)
        for pid in add:
            if d.is_ancestor(file_id, pid):
                raise DriveError(403, "cannotMoveFolderIntoDescendant", "A folder cannot be moved into its own descendant.")
        if data is not None and f["mimeType"] == FOLDER:
            raise DriveError(400, "badContent", "Folders have no content.")
        for key in ("name", "trashed", "description"):
            if key in meta:
                f[key] = meta[key]
        f["parents"] = [p for p in f["parents"] if p not in remove] + [p for p in add if p not in f["parents"]]
        if data is not None:
            d._set_content(f, data)
        d.touch(f)
        return f


def _split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], bytes, str | None]:
    m = re.search(r'boundary="?([^";]+)"?', content_type)
    if not m:
        raise DriveError(400, "badRequest", "Multipart body without boundary.")
    delimiter = b"--" + m.group(1).encode()
    chunks = body.split(delimiter)
    # Line breaks are CRLF or, as google-api-python-client's email generator
    # writes them, bare LF: the body's first delimiter line says which, so a
    # payload that itself ends in CR keeps it.
    eol = b"\r\n" if len(chunks) > 1 and chunks[1].startswith(b"\r\n") else b"\n"
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[len(eol):] if chunk.startswith(eol) else chunk
        ends = [(i, sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := chunk.find(sep)) >= 0]
        if not ends:
            raise DriveError(400, "badRequest", "Multipart part without headers.")
        i, sep = min(ends)
        head, payload = chunk[:i], chunk[i + len(sep):]
        # The delimiter is preceded by a line break that belongs to it, not to the payload.
        payload = payload[: -len(eol)] if payload.endswith(eol) else payload
        headers = dict(line.split(":", 1) for line in head.decode("latin-1").splitlines() if ":" in line)
        ctype = next((v.strip() for k, v in headers.items() if k.strip().lower() == "content-type"), None)
        parts.append((ctype, payload))
    if len(parts) != 2:
        raise DriveError(400, "badRequest", "Multipart upload needs metadata and media parts.")
    try:
        meta = json.loads(parts[0][1] or b"{}")
    except ValueError:
        raise DriveError(400, "parseError", "Parse Error") from None
    return meta, parts[1][1], parts[1][0]


class TokenHandler(_Base):
    needs_auth = False

    def post(self) -> None:
        d = self.double
        form = {k: v[-1].decode() for k, v in self.request.body_arguments.items()}
        grant = form.get("grant_type")
        with d.lock:
            if grant == "refresh_token":
                client = d.refresh_tokens.get(form.get("refresh_token", ""))
                if client is None or client != form.get("client_id") or d.clients.get(client) != form.get("client_secret"):
                    self.set_status(400)
                    self.reply({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, 400)
                    return
            elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
                if not self._jwt_ok(form.get("assertion", "")):
                    self.reply({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, 400)
                    return
            else:
                self.reply({"error": "unsupported_grant_type"}, 400)
                return
        token = d.issue_token()
        self.reply({"access_token": token, "expires_in": d.token_lifetime, "token_type": "Bearer",
                    "scope": "https://www.googleapis.com/auth/drive"})

    def _jwt_ok(self, assertion: str) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            _, claims, signed, sig = parse_jwt(assertion)
            key = self.double.service_accounts[claims["iss"]]
            key.verify(sig, signed, padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, KeyError, InvalidSignature):
            return False
        # google-auth always addresses the assertion to Google's token endpoint.
        audiences = {self.double.token_uri, "https://oauth2.googleapis.com/token"}
        return claims.get("aud") in audiences and claims.get("exp", 0) > time.time()


class FilesHandler(_Base):
    def get(self) -> None:  # files.list
        d = self.double
        try:
            pred = parse_query(self.args["q"]) if self.args.get("q") else (lambda f: True)
            page_size = min(int(self.args.get("pageSize", "100")), 1000)
            offset = int(self.args.get("pageToken", "p0")[1:])
        except ValueError as e:
            raise DriveError(400, "invalid", str(e) or "Invalid Value") from None
        if page_size < 1:
            raise DriveError(400, "invalid", "Invalid Value: pageSize")
        with d.lock:
            matches = [f for f in d.files.values() if f["id"] != "root" and pred(f)]
        page = matches[offset : offset + page_size]
        result: dict[str, Any] = {"kind": "drive#fileList", "incompleteSearch": False, "files": page}
        if offset + page_size < len(matches):
            result["nextPageToken"] = f"p{offset + page_size}"
        fields = self.args.get("fields", f"kind,incompleteSearch,nextPageToken,files({DEFAULT_FILE_FIELDS})")
        self.reply(self.masked(result, fields))

    def post(self) -> None:  # files.create, metadata only
        self.reply_file(_create(self.double, self.json_body(), b"", None))


class GenerateIdsHandler(_Base):
    def get(self) -> None:
        count = min(int(self.args.get("count", "10")), 1000)
        self.reply({"kind": "drive#generatedIds", "space": "drive", "ids": [secrets.token_urlsafe(24)[:33] for _ in range(count)]})


class FileHandler(_Base):
    def get(self, file_id: str) -> None:
        d = self.double
        with d.lock:
            f = d.get(file_id)
            data = d.content.get(file_id)
        if self.args.get("alt") != "media":
            self.reply_file(f)
            return
        if f["mimeType"].startswith("application/vnd.google-apps."):
            raise DriveError(403, "fileNotDownloadable", "Only files with binary content can be downloaded. Use Export with Docs Editors files.")
        assert data is not None
        total = len(data)
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.request.headers.get("Range", ""))
        self.set_header("Content-Type", f["mimeType"])
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else total - 1, total - 1)
            if start >= total:
                self.set_status(416)
                self.set_header("Content-Range", f"bytes */{total}")
                self.finish()
                return
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {start}-{end}/{total}")
            self.finish(data[start : end + 1])
            return
        self.finish(data)

    def patch(self, file_id: str) -> None:
        self.reply_file(_update(self.double, file_id, self.json_body(), self.args, None))

    def delete(self, file_id: str) -> None:
        self.double.remove(file_id)
        self.set_status(204)
        self.finish()


class CopyHandler(_Base):
    def post(self, file_id: str) -> None:
        d = self.double
        meta = self.json_body()
        with d.lock:
            src = d.get(file_id)
            if src["mimeType"] == FOLDER:
                raise DriveError(403, "fileNotCopyable", "Folders cannot be copied.")
            new = {"id": meta.get("id"), "name": meta.get("name", "Copy of " + src["name"]), "mimeType": src["mimeType"],
                   "parents": meta.get("parents") or src["parents"]}
            f = _create(d, new, d.content[file_id], None)
        self.reply_file(f)


class UploadHandler(_Base):
    """`/upload/drive/v3/files[/{id}]`: media, multipart, resumable start and chunk PUTs."""

    def post(self, file_id: str | None = None) -> None:
        self._start_or_upload(None)

    def patch(self, file_id: str) -> None:
        self._start_or_upload(file_id)

    def _start_or_upload(self, file_id: str | None) -> None:
        d = self.double
        kind = self.args.get("uploadType")
        ctype = self.request.headers.get("Content-Type", "")
        if kind == "multipart":
            meta, data, media_type = _split_multipart(ctype, self.request.body)
        elif kind == "media":
            meta, data, media_type = {}, self.request.body, ctype or None
        elif kind == "resumable":
            sid = secrets.token_urlsafe(16)
            with d.lock:
                if file_id is not None:
                    d.get(file_id)
                d.sessions[sid] = {"file_id": file_id, "meta": self.json_body(), "data": bytearray(), "done": None,
                                   "mime": self.request.headers.get("X-Upload-Content-Type"),
                                   "fields": self.args.get("fields", DEFAULT_FILE_FIELDS)}
            target = f"/{file_id}" if file_id else ""
            self.set_header("Location", f"{self.request.protocol}://{self.request.host}/upload/drive/v3/files{target}?uploadType=resumable&upload_id={sid}")
            self.finish()
            return
        else:
            raise DriveError(400, "invalid", f"Invalid uploadType {kind!r}.")
        if file_id is None:
            f = _create(d, meta, data, media_type)
        else:
            f = _update(d, file_id, meta, self.args, data)
        self.reply_file(f)

    def put(self, file_id: str | None = None) -> None:
        d = self.double
        sid = self.args.get("upload_id", "")
        with d.lock:
            session = d.sessions.get(sid)
        if session is None:
            raise DriveError(404, "notFound", "Upload session not found.")
        if session["done"] is not None:
            self.reply(self.masked(session["done"], session["fields"]))
            return
        received: bytearray = session["data"]
        crange = self.request.headers.get("Content-Range", "")
        body = self.request.body
        m = re.fullmatch(r"bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)", crange.strip()) if crange else None
        if crange and not m:
            raise DriveError(400, "badContentRange", f"Invalid Content-Range {crange!r}.")
        total = int(m.group(3)) if m and m.group(3) != "*" else None
        if m and m.group(1) is not None:
            start, end = int(m.group(1)), int(m.group(2))
            if end < start or end - start + 1 != len(body) or start > len(received):
                raise DriveError(400, "badContentRange", "Content-Range does not match the session or the body.")
            del received[start:]
            received.extend(body)
        elif not crange:
            # An empty final request: googleapiclient omits Content-Range for 0-byte uploads.
            total = len(received) + len(body)
            received.extend(body)
        if total is None or len(received) < total:
            if m and m.group(1) is not None and len(received) % CHUNK_GRANULARITY:
                del received[int(m.group(1)):]
                raise DriveError(400, "badChunkSize", "Non-final chunks must be multiples of 256 KiB.")
            self.set_status(308, "Resume Incomplete")
            if received:
                self.set_header("Range", f"bytes=0-{len(received) - 1}")
            self.finish()
            return
        if len(received) > total:
            raise DriveError(400, "badContentRange", "More bytes than announced.")
        data = bytes(received)
        if session["file_id"] is None:
            f = _create(d, session["meta"], data, session["mime"])
        else:
            f = _update(d, session["file_id"], session["meta"], {}, data)
        with d.lock:
            session["done"] = f
            session["data"] = bytearray()
        self.reply(self.masked(f, session["fields"]))


class StartTokenHandler(_Base):
    def get(self) -> None:
        with self.double.lock:
            self.reply({"kind": "drive#startPageToken", "startPageToken": str(len(self.double.changes) + 1)})


class ChangesHandler(_Base):
    def get(self) -> None:
        d = self.double
        try:
            start = int(self.args.get("pageToken", "")) - 1
            size = min(int(self.args.get("pageSize", "100")), 1000)
        except ValueError:
            raise DriveError(400, "invalid", "Invalid Value: pageToken") from None
        with d.lock:
            ids = d.changes[start : start + size]
            changes = []
            for fid in ids:
                f = d.files.get(fid)
                change = {"kind": "drive#change", "changeType": "file", "fileId": fid, "removed": f is None}
                if f is not None:
                    change["file"] = copy.deepcopy(f)
                changes.append(change)
            result: dict[str, Any] = {"kind": "drive#changeList", "changes": changes}
            if start + size < len(d.changes):
                result["nextPageToken"] = str(start + size + 1)
            else:
                result["newStartPageToken"] = str(len(d.changes) + 1)
        self.reply(self.masked(result, self.args.get("fields", "*")))


ROUTES: list[tuple[str, type]] = [
    (r"/token", TokenHandler),
    (r"/drive/v3/files", FilesHandler),
    (r"/drive/v3/files/generateIds", GenerateIdsHandler),
    (r"/drive/v3/files/([^/]+)", FileHandler),
    (r"/drive/v3/files/([^/]+)/copy", CopyHandler),
    (r"/upload/drive/v3/files", UploadHandler),
    (r"/upload/drive/v3/files/([^/]+)", UploadHandler),
    (r"/drive/v3/changes/startPageToken", StartTokenHandler),
    (r"/drive/v3/changes", ChangesHandler),
]
