"""`/files/{path}`: raw file download, streamed piece by piece from the store.

The file is never held whole in memory: pieces from the backend's
`read_stream` are written and flushed one at a time, so a slow client slows
the read rather than growing a buffer.  `?download=1` asks the browser to
save instead of display.  The same hidden-file and traversal rules as the
contents API apply (through the contents manager).
"""

from __future__ import annotations

import logging
import mimetypes
from urllib.parse import quote

from tornado import iostream

from zasperhub.platform.web.base import APIHandler

log = logging.getLogger("zasperhub")

#: Served files are untrusted: a page from /files must not run with the
#: server's origin (it could call the API with the user's cookie).
FILES_CSP = "frame-ancestors 'self'; sandbox allow-scripts"


def content_type_for(name: str, first_piece: bytes) -> str:
    """Content-Type from the name, else sniffed: UTF-8 text or octet-stream."""
    if name.endswith(".ipynb"):
        return "application/x-ipynb+json"
    guessed, encoding = mimetypes.guess_type(name)
    if guessed and not encoding:
        if guessed.startswith("text/") or guessed in ("application/json", "application/javascript"):
            return f"{guessed}; charset=UTF-8"
        return guessed
    if encoding:  # .gz, .bz2 …: the bytes are compressed, whatever is inside
        return "application/octet-stream"
    try:
        # A piece may end inside a multi-byte character: ignore the last 3 bytes.
        first_piece[: max(0, len(first_piece) - 3)].decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


class FilesHandler(APIHandler):
    """GET/HEAD `/files/{path}`."""

    auth_required = True

    async def head(self, path: str) -> None:
        await self.get(path, include_body=False)

    async def get(self, path: str, include_body: bool = True) -> None:
        st, pieces = await self.zasper.contents_manager.open_stream(path)
        try:
            first = await anext(pieces, b"")
            self.set_header("Content-Type", content_type_for(st.name, first))
            self.set_header("Content-Security-Policy", FILES_CSP)
            self.set_header("Cache-Control", "no-cache")
            if st.mtime is not None:
                self.set_header("Last-Modified", st.mtime)
            if self.get_query_argument("download", "0") not in ("0", "", "false"):
                self.set_header("Content-Disposition", content_disposition(st.name))
            if st.size is not None:
                # Lets browsers show download progress; if the file changes
                # while streaming, tornado cuts the response rather than
                # sending a silently wrong length.  (gzip drops the header.)
                self.set_header("Content-Length", st.size)
            if not include_body:
                self.finish()
                return
            if first:
                self.write(first)
                await self.flush()
            async for piece in pieces:
                if piece:
                    self.write(piece)
                    await self.flush()  # back-pressure: wait until the client took it
            self.finish()
        except iostream.StreamClosedError:
            log.info("Download of %s stopped: the client went away", st.path)
        finally:
            await pieces.aclose()  # type: ignore[attr-defined]


# The captured path keeps its leading slash, as for /api/contents, so that
# "/files//etc/passwd" is seen as absolute (400), not as "etc/passwd".
handlers = [
    (r"/files(/.*)", FilesHandler),
]
