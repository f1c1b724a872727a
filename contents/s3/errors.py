"""Translate boto3/botocore failures into the storage contract's `OSError` family.

This is the one boundary where S3 error codes become `FileNotFoundError`,
`PermissionError`, `PreconditionFailed` or `StorageUnavailable`; nothing
above it sees botocore types.  botocore is imported lazily (only once an
error actually has to be classified), so importing this module is free.
"""

from __future__ import annotations

from zasperhub.contents.base import PreconditionFailed, StorageUnavailable

#: S3 error codes (and bare HTTP statuses, as HEAD responses carry no body).
NOT_FOUND = {"NoSuchKey", "NotFound", "404", "NoSuchUpload"}
NO_BUCKET = {"NoSuchBucket"}
BAD_CREDENTIALS = {
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed", "InvalidClientTokenId",
}
DENIED = {"AccessDenied", "403", "AllAccessDisabled", "AccountProblem"}
PRECONDITION = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
UNAVAILABLE = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "RequestTimeTooSkewed", "503", "500"}


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore `ClientError` ("" for anything else)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", "") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def http_status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        msg = response.get("Error", {}).get("Message")
        if msg:
            return f"{error_code(exc)}: {msg}"
    return str(exc) or type(exc).__name__


def translate(exc: BaseException, *, path: str, where: str, exclusive: bool = False) -> BaseException:
    """The contract exception for `exc` raised while working on API `path`.

    `where` names the store ("s3://bucket/prefix") for messages.  With
    `exclusive`, a failed precondition means "something already exists"
    (an `If-None-Match: *` write), reported as `FileExistsError`.
    Exceptions that are not S3/transport failures are returned unchanged.
    """
    from botocore import exceptions as bx

    if isinstance(exc, (OSError, ValueError)) and not isinstance(exc, bx.BotoCoreError):
        return exc
    if isinstance(exc, bx.ClientError):
        code, status = error_code(exc), http_status(exc)
        msg = _message(exc)
        if code in PRECONDITION or status == 412:
            if exclusive:
                return FileExistsError(17, f"File exists: {path}", path)
            return PreconditionFailed(17, f"The file changed in the store since it was read: {path}", path)
        if code in NOT_FOUND or status == 404 and code not in NO_BUCKET:
            return FileNotFoundError(2, f"No such file or directory: {path}", path)
        if code in NO_BUCKET:
            return StorageUnavailable(f"S3 bucket of {where} does not exist ({msg})")
        if code in BAD_CREDENTIALS:
            return PermissionError(13, f"S3 refused the credentials: {msg}", path)
        if code in DENIED or status == 403:
            return PermissionError(13, f"S3 denied access to {where}: {msg}", path)
        if code in UNAVAILABLE or status >= 500 or status == 429:
            return StorageUnavailable(f"S3 at {where} failed: {msg}")
        if status == 409 and code == "OperationAborted":
            return StorageUnavailable(f"S3 at {where} is busy: {msg}")
        return OSError(5, f"S3 error on {path}: {msg}", path)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return PermissionError(
            13, f"S3 refused the credentials: none usable were found ({exc}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "an AWS profile, or S3Backend credentials in a config file", path,
        )
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError, bx.IncompleteReadError)):
        return StorageUnavailable(f"S3 at {where} is unreachable: {exc}")
    if isinstance(exc, bx.BotoCoreError):
        return StorageUnavailable(f"S3 at {where} failed: {exc}")
    # urllib3 errors can escape while a streamed body is being read.
    try:
        from urllib3 import exceptions as ux
    except ImportError:  # pragma: no cover — botocore depends on urllib3
        return exc
    if isinstance(exc, ux.HTTPError):
        return StorageUnavailable(f"S3 at {where} broke off a transfer: {exc}")
    return exc
