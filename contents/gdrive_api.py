"""Google Drive v3 client plumbing for `DriveBackend`.

Credentials (OAuth user tokens, a service-account key, or a refresh hook),
one API client per worker thread (httplib2 connections are not thread-safe),
bounded retries, and the translation of Drive/HTTP/transport errors into the
`OSError` family the contents layer expects.  This module imports
googleapiclient and google-auth, so only `zasperhub.contents.gdrive` imports
it, and only once a Drive backend is actually configured.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import errno
import http.client
import inspect
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import google.auth._helpers
import google.auth.credentials
import google.auth.exceptions
import google.oauth2.credentials
import google.oauth2.service_account
import google_auth_httplib2
import googleapiclient
import httplib2
from googleapiclient.discovery import Resource, build_from_document
from googleapiclient.errors import HttpError
from googleapiclient.http import build_http

from zasperhub.contents.base import PreconditionFailed, StorageUnavailable

T = TypeVar("T")
log = logging.getLogger(__name__)

DRIVE_SCOPE = "https://www.googleapis.com/auth/drive"
#: HTTP statuses worth retrying; Drive also signals rate limits as 403 + reason.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"})
#: How long before expiry google-auth refreshes (its own constant, kept private there).
REFRESH_THRESHOLD = getattr(google.auth._helpers, "REFRESH_THRESHOLD", datetime.timedelta(minutes=3, seconds=45))
#: Assumed lifetime of a hook-supplied token that comes without an expiry;
#: a 401 before then still triggers a refresh.
DEFAULT_HOOK_TOKEN_LIFETIME = datetime.timedelta(minutes=50)

#: What the hook may return: a token, (token, expiry), or an OAuth-style dict.
RefreshResult = str | tuple[str, datetime.datetime | None] | dict[str, Any]
Refresher = Callable[[], RefreshResult | Awaitable[RefreshResult]]


def discovery_document(root_url: str | None = None) -> str:
    """The Drive v3 discovery document shipped with googleapiclient, optionally re-rooted.

    Re-rooting sets `rootUrl` and `baseUrl` (and the upload/batch paths derived
    from them) so the whole client, media uploads included, talks to another
    endpoint — a local API double in tests, a proxy in production.
    """
    path = os.path.join(os.path.dirname(googleapiclient.__file__), "discovery_cache", "documents", "drive.v3.json")
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    if root_url:
        root = root_url.rstrip("/") + "/"
        doc["rootUrl"] = doc["mtlsRootUrl"] = root
        doc["baseUrl"] = root + doc.get("servicePath", "drive/v3/")
    return json.dumps(doc)


def _naive_utc(when: datetime.datetime) -> datetime.datetime:
    # google-auth compares expiries with a naive UTC "now".
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when


def _parse_refresh_result(result: RefreshResult) -> tuple[str, datetime.datetime]:
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    expiry: datetime.datetime | None = None
    if isinstance(result, str):
        token = result
    elif isinstance(result, tuple) and len(result) == 2:
        token, expiry = result
    elif isinstance(result, dict):
        token = result.get("access_token") or result.get("token") or ""
        if result.get("expires_in") is not None:
            expiry = now + datetime.timedelta(seconds=float(result["expires_in"]))
        elif result.get("expires_at") is not None:
            expiry = datetime.datetime.fromtimestamp(float(result["expires_at"]), datetime.timezone.utc)
        elif isinstance(result.get("expiry"), datetime.datetime):
            expiry = result["expiry"]
    else:
        raise google.auth.exceptions.RefreshError(f"credentials_refresher returned {type(result).__name__}, not a token")
    if not isinstance(token, str) or not token:
        raise google.auth.exceptions.RefreshError("credentials_refresher returned no access token")
    expiry = _naive_utc(expiry) if expiry else now + DEFAULT_HOOK_TOKEN_LIFETIME
    # google-auth refreshes REFRESH_THRESHOLD (~4 min) before the expiry and
    # rejects tokens closer to it than that.  A hook may legitimately hand out
    # a short-lived token (e.g. "ask me again in 30 s"): shift its expiry so
    # google-auth uses it and asks again after that lifetime.
    lifetime = expiry - now
    if lifetime <= REFRESH_THRESHOLD:
        expiry = now + REFRESH_THRESHOLD + max(lifetime, datetime.timedelta(seconds=1))
    return token, expiry


def hook_credentials(refresher: Refresher, loop_getter: Callable[[], asyncio.AbstractEventLoop | None],
                     *, token: str | None = None, timeout: float = 60) -> google.oauth2.credentials.Credentials:
    """OAuth credentials whose refresh asks `refresher` (sync, or a coroutine run on the app's loop)."""

    def handler(request: Any, scopes: Sequence[str] | None = None) -> tuple[str, datetime.datetime]:
        result = refresher()
        if inspect.isawaitable(result):
            loop = loop_getter()
            if loop is None or not loop.is_running():
                raise google.auth.exceptions.RefreshError("credentials_refresher is a coroutine but no event loop is running")
            awaitable = result

            async def wait() -> RefreshResult:
                return await awaitable

            result = asyncio.run_coroutine_threadsafe(wait(), loop).result(timeout)
        return _parse_refresh_result(result)  # type: ignore[arg-type]

    return google.oauth2.credentials.Credentials(token=token, refresh_handler=handler)


def serialize_refresh(creds: google.auth.credentials.Credentials) -> google.auth.credentials.Credentials:
    """Let only one worker thread refresh at a time.

    Several threads can hit a 401 with the same expired token at once; without
    this each would refresh (and a hub-backed hook would be asked N times).  A
    thread that waited while another refreshed reuses that fresh token.
    """
    lock = threading.Lock()
    inner = creds.refresh
    last = [0.0]

    def refresh(request: Any) -> None:
        started = time.monotonic()
        with lock:
            if last[0] > started and creds.token:
                return
            inner(request)
            last[0] = time.monotonic()

    creds.refresh = refresh  # type: ignore[method-assign]
    return creds


class _Transient(Exception):
    """An error worth retrying; carries the user-facing reason."""

    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


def _error_reason(exc: HttpError) -> tuple[str, str]:
    """(machine reason, message) from Drive's JSON error body."""
    try:
        err = json.loads(exc.content.decode("utf-8", "replace"))["error"]
        first = (err.get("errors") or [{}])[0]
        return str(first.get("reason") or err.get("status") or ""), str(err.get("message") or exc.resp.reason)
    except (ValueError, KeyError, TypeError, AttributeError):
        return "", str(getattr(exc.resp, "reason", "") or exc)


#: Raised by the transport (our own code inside API calls raises none of these):
#: socket errors such as ENETUNREACH are plain OSErrors, DNS failures are
#: httplib2's, resets are ConnectionErrors, stalls TimeoutErrors.
_TRANSPORT_ERRORS = (httplib2.HttpLib2Error, http.client.HTTPException, OSError, google.auth.exceptions.TransportError)


def translate(exc: BaseException, path: str) -> BaseException:
    """Drive/transport exception → the OSError family (or `_Transient` for retryable ones)."""
    if isinstance(exc, HttpError):
        status = int(exc.resp.status)
        reason, message = _error_reason(exc)
        if status in RETRY_STATUSES or (status == 403 and reason in RATE_LIMIT_REASONS):
            retry_after = exc.resp.get("retry-after") if hasattr(exc.resp, "get") else None
            delay = float(retry_after) if retry_after and str(retry_after).isdigit() else None
            return _Transient(f"Google Drive answered {status} {reason or ''}: {message}".replace("  ", " "), delay)
        if status == 404:
            return FileNotFoundError(errno.ENOENT, f"Not found in Google Drive: {message}", path)
        if status == 401:
            return PermissionError(errno.EACCES, f"Google Drive refused the credentials (401): {message}", path)
        if status == 403:
            return PermissionError(errno.EACCES, f"Google Drive denied access (403 {reason}): {message}", path)
        if status == 409:
            return FileExistsError(errno.EEXIST, f"Google Drive conflict: {message}", path)
        if status == 412:
            return PreconditionFailed(errno.EEXIST, f"Google Drive precondition failed: {message}", path)
        return OSError(errno.EIO, f"Google Drive rejected the request ({status} {reason}): {message}", path)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        if getattr(exc, "retryable", False):
            return _Transient(f"token refresh failed: {exc}")
        return PermissionError(errno.EACCES, f"Google Drive credentials could not be refreshed: {exc}", path)
    if isinstance(exc, StorageUnavailable):
        return exc
    if isinstance(exc, _TRANSPORT_ERRORS):
        return _Transient(f"cannot reach Google Drive: {type(exc).__name__}: {exc}")
    return exc


class DriveClient:
    """Runs Drive API calls on a small thread pool, one API client per thread."""

    def __init__(self, credentials: google.auth.credentials.Credentials, *, root_url: str | None = None,
                 timeout: float = 60, max_workers: int = 4, max_retries: int = 5, backoff: float = 0.5,
                 max_backoff: float = 20.0) -> None:
        self.credentials = serialize_refresh(credentials)
        self.discovery = discovery_document(root_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gdrive")
        self._local = threading.local()
        self._https: list[httplib2.Http] = []
        self._https_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    # -- transports -----------------------------------------------------------
    def new_http(self) -> google_auth_httplib2.AuthorizedHttp:
        """A fresh authorized transport, for one thread or one long-lived upload/download."""
        raw = build_http()  # also stops httplib2 from treating Drive's 308 as a redirect
        raw.timeout = self.timeout
        with self._https_lock:
            self._https.append(raw)
        return google_auth_httplib2.AuthorizedHttp(self.credentials, http=raw)

    def new_service(self, http: Any = None) -> Resource:
        return build_from_document(self.discovery, http=http or self.new_http())

    def service(self) -> Resource:
        """This worker thread's own API client."""
        svc = getattr(self._local, "service", None)
        if svc is None:
            svc = self._local.service = self.new_service()
        return svc

    # -- calls ------------------------------------------------------------------
    async def run(self, fn: Callable[[Resource], T], path: str = "") -> T:
        """Run `fn(service)` on a worker thread with retries and error translation."""
        if self.closed:
            raise StorageUnavailable("the Google Drive backend is closed")
        self.loop = asyncio.get_running_loop()
        return await self.loop.run_in_executor(self._executor, self.call_sync, fn, path)

    def call_sync(self, fn: Callable[[Resource], T], path: str = "") -> T:
        """`fn(service)`, retried on transient failures; runs on a worker thread.

        `fn` may be re-invoked after a failure, so it must be idempotent or
        resumable (resumable upload requests continue where the store stopped).
        """
        attempt = 0
        while True:
            try:
                return fn(self.service())
            except Exception as exc:  # noqa: BLE001 - translated right below
                err = translate(exc, path)
                if not isinstance(err, _Transient):
                    if err is exc:
                        raise
                    raise err from exc
                if attempt >= self.max_retries:
                    raise StorageUnavailable(f"Google Drive is unavailable ({err.reason}; gave up after {attempt + 1} attempts)") from exc
                delay = err.delay if err.delay is not None else self.backoff * (2 ** attempt) * random.uniform(0.5, 1.0)
                attempt += 1
                log.warning("Google Drive call for %r failed (%s); retry %d/%d in %.2fs", path, err.reason, attempt, self.max_retries, delay)
                time.sleep(min(delay, self.max_backoff))

    def close(self) -> None:
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._https_lock:
            https, self._https = self._https, []
        for h in https:
            h.close()


def load_credentials(*, credentials_file: str = "", access_token: str = "", refresh_token: str = "",
                     client_id: str = "", client_secret: str = "", token_uri: str = "",
                     scopes: Sequence[str] = (DRIVE_SCOPE,)) -> google.auth.credentials.Credentials:
    """Credentials from a key/authorized-user file or from explicit OAuth fields.

    A file's `token_uri` is kept unless `token_uri` is given (tests point it at
    the double; a proxy may need it too).
    """
    if credentials_file:
        try:
            with open(credentials_file, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read Google credentials file {credentials_file!r}: {e}") from None
        if token_uri:
            info["token_uri"] = token_uri
        kind = info.get("type")
        if kind == "service_account":
            return google.oauth2.service_account.Credentials.from_service_account_info(info, scopes=list(scopes))
        if kind == "authorized_user":
            return google.oauth2.credentials.Credentials.from_authorized_user_info(info, scopes=list(scopes))
        raise ValueError(f"Google credentials file {credentials_file!r} has type {kind!r}; expected 'service_account' or 'authorized_user'")
    if refresh_token and not (client_id and client_secret):
        raise ValueError("a Google refresh token needs the OAuth client id and client secret too")
    if not (access_token or refresh_token):
        raise ValueError("no Google Drive credentials configured: set DriveBackend.credentials_file "
                         "(or $ZASPERHUB_GDRIVE_CREDENTIALS / $GOOGLE_APPLICATION_CREDENTIALS), "
                         "an access/refresh token ($ZASPERHUB_GDRIVE_ACCESS_TOKEN, $ZASPERHUB_GDRIVE_REFRESH_TOKEN "
                         "with $ZASPERHUB_GDRIVE_CLIENT_ID/$ZASPERHUB_GDRIVE_CLIENT_SECRET), or a credentials_refresher")
    return google.oauth2.credentials.Credentials(
        token=access_token or None, refresh_token=refresh_token or None, client_id=client_id or None,
        client_secret=client_secret or None, token_uri=token_uri or "https://oauth2.googleapis.com/token", scopes=list(scopes))
