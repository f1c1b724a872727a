"""HMAC signing and verification of Jupyter messages on raw bytes.

The signature covers the four serialized JSON parts (header, parent header,
metadata, content) exactly as they travel, so no part is ever decoded to be
signed.  An empty key disables signing, as in the messaging spec.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from zasperhub.platform.kernels import native

_openssl_hmac_new: Any
try:  # OpenSSL's HMAC object directly: hmac.HMAC wraps it in a Python class per copy
    from _hashlib import hmac_new as _openssl_hmac_new
except ImportError:  # pragma: no cover - CPython without OpenSSL
    _openssl_hmac_new = None

_DIGESTS = {
    "hmac-sha256": hashlib.sha256,
    "hmac-sha1": hashlib.sha1,
    "hmac-md5": hashlib.md5,
    "hmac-sha512": hashlib.sha512,
}


class Signer:
    """Signs and verifies message parts with one kernel's key and scheme."""

    def __init__(self, key: bytes, scheme: str = "hmac-sha256") -> None:
        if scheme not in _DIGESTS:
            raise ValueError(f"Unsupported signature scheme: {scheme!r}")
        self.key = key
        # A keyed HMAC object is prepared once; copying it per message avoids
        # re-deriving the padded key every time.
        self._template: Any = None
        if key:
            try:
                self._template = _openssl_hmac_new(key, digestmod=scheme[5:]) if _openssl_hmac_new is not None else None
            except ValueError:
                self._template = None
            if self._template is None:
                self._template = hmac.new(key, digestmod=_DIGESTS[scheme])
        # The compiled HMAC (one call per message; native.py) for the usual scheme and small messages.
        self._fast: Any = native.hmac(key) if key and scheme == "hmac-sha256" else None

    def sign(self, parts: Sequence[bytes]) -> bytes:
        """The hex signature of header, parent, metadata, content (b'' without a key)."""
        if self._template is None:
            return b""
        if self._fast is not None:
            signature = self._fast.sign(parts)
            if signature is not None:
                return signature  # type: ignore[no-any-return]
        h = self._template.copy()
        for part in parts[:4]:
            h.update(part)
        return h.hexdigest().encode("ascii")

    def verify(self, signature: bytes, parts: Sequence[bytes]) -> bool:
        """Constant-time check of a received signature."""
        if self._template is None:
            return True
        return hmac.compare_digest(signature, self.sign(parts))
