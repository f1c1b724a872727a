"""Password identity for `zasperhub --protected=true`.

The password is stored only as a salted argon2 hash in `password.json` in
the user's config dir (mode 0600).  Browsers log in through the form and
get a signed session cookie whose fingerprint is derived from the hash, so
changing the password (even while the server runs) ends every session.
API clients may still use the server's token, but only one the operator set
explicitly (`--token`, `$JUPYTER_TOKEN`): a random one nobody was shown
would be useless, so none is generated in this mode.

Without a password the server refuses to start and says how to set one;
printing a generated password would put a credential in logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from zasperhub.auth.base import AuthSetupError
from zasperhub.auth.paths import password_path, read_private_file, write_private_file
from zasperhub.auth.throttle import LoginThrottle
from zasperhub.auth.token import TokenIdentityProvider

if TYPE_CHECKING:
    from zasperhub.platform.app import ZasperApp

log = logging.getLogger("zasperhub")

MIN_PASSWORD_LENGTH = 8
#: Longer inputs are refused before hashing (argon2 on megabytes is a DoS).
MAX_PASSWORD_LENGTH = 1024
#: How often (seconds) the hash file is re-read to notice a password change.
RELOAD_INTERVAL = 2.0

_hasher = PasswordHasher()
# One worker: argon2 uses ~64 MiB per hash, so concurrent logins queue up
# instead of multiplying memory, and the event loop never blocks on them.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zasperhub-argon2")


def validate_new_password(password: str) -> None:
    """Raise ValueError with a user-facing message when `password` is unfit."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"Password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"Password must be at most {MAX_PASSWORD_LENGTH} characters")
    if password != password.strip():
        raise ValueError("Password must not start or end with whitespace")


class PasswordStore:
    """The argon2 hash on disk: set, verify, and notice outside changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or password_path()
        self._hash: str | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def _read(self) -> str | None:
        try:
            raw = read_private_file(self.path)
        except OSError as e:
            raise AuthSetupError(f"Cannot read the password file {self.path}: {e.strerror or e}") from None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            value = data["hash"]
        except (ValueError, KeyError, TypeError):
            raise AuthSetupError(f"Password file {self.path} is damaged; set a new password with `zasperhub password`") from None
        if not isinstance(value, str) or not value.startswith("$argon2"):
            raise AuthSetupError(f"Password file {self.path} holds no argon2 hash; set a new password with `zasperhub password`")
        return value

    def load(self) -> str | None:
        """The stored hash, or None; raises AuthSetupError for a damaged file."""
        value = self._read()
        self._stamp = None
        return value

    def current_hash(self) -> str | None:
        """The stored hash, re-read when the file changed (checked every few seconds)."""
        now = time.monotonic()
        if self._stamp is not None and now - self._checked < RELOAD_INTERVAL:
            return self._hash
        self._checked = now
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp != self._stamp:
            try:
                self._hash = self._read()
            except AuthSetupError as e:
                # A damaged file while running locks everyone out rather than
                # letting anyone in; the error is logged once per change.
                log.error("%s", e)
                self._hash = None
            self._stamp = stamp
        return self._hash

    def set_password(self, password: str) -> None:
        """Validate, hash and store a new password."""
        validate_new_password(password)
        self._write_hash(_hasher.hash(password))

    def _write_hash(self, value: str) -> None:
        payload = {"hash": value, "set_at": int(time.time())}
        write_private_file(self.path, (json.dumps(payload) + "\n").encode())
        self._stamp = None

    def verify(self, password: str) -> bool:
        """Check `password` against the stored hash (argon2's check is constant-time)."""
        stored = self.current_hash()
        if stored is None or not password or len(password) > MAX_PASSWORD_LENGTH:
            return False
        try:
            _hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if _hasher.check_needs_rehash(stored):
            # Keep hashes at current parameters; same password, new salt.
            self._write_hash(_hasher.hash(password))
        return True


class PasswordIdentityProvider(TokenIdentityProvider):
    """Browsers log in with the password; API clients may use a set token."""

    login_secret_kind = "password"

    def __init__(self, store: PasswordStore, token: str = "", **kwargs: Any) -> None:
        super().__init__(token, **kwargs)
        self.store = store

    def anonymous_allowed(self) -> bool:
        # Unlike token mode, an empty token means "no token login", never
        # "no authentication".
        return False

    def session_fingerprint(self) -> str:
        stored = self.store.current_hash() or ""
        return hashlib.sha256(("password:" + stored).encode()).hexdigest()[:16]

    def login_url(self) -> str | None:
        return "login"

    def missing_credentials_message(self) -> str:
        return "Authentication required: log in with the password"

    async def check_secret(self, secret: str) -> bool:
        if len(secret) > MAX_PASSWORD_LENGTH:
            return False
        return await asyncio.get_running_loop().run_in_executor(_executor, self.store.verify, secret)


def make_password_provider(app: ZasperApp) -> PasswordIdentityProvider:
    """The provider for `--protected=true`; refuses to start without a password."""
    store = PasswordStore()
    if store.load() is None:
        raise AuthSetupError(f"--protected=true needs a password: run `zasperhub password` first (looked in {store.path})")
    token = app.token  # resolves the default first, which sets token_generated
    if getattr(app, "token_generated", False):
        token = ""
    return PasswordIdentityProvider(
        store,
        token=token,
        cookie_name=f"zasperhub-session-{app.port}",
        throttle=LoginThrottle(parent=app),
    )
