"""Where auth state lives on disk, and how secrets are written there.

The password hash and the cookie-signing secret sit in the user's config
directory: `$ZASPERHUB_CONFIG_DIR` if set (tests isolate themselves with it),
otherwise `zasperhub/` inside Jupyter's config dir (which honours
`$JUPYTER_CONFIG_DIR`, default `~/.jupyter`).  Every file is written
atomically with mode 0600 in a 0700 directory, so a crash never leaves a
half-written secret and no other local user can read one.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("zasperhub")

PASSWORD_FILENAME = "password.json"
COOKIE_SECRET_FILENAME = "cookie_secret"
#: Bytes of a generated cookie-signing key.
COOKIE_SECRET_BYTES = 32


def config_dir() -> Path:
    """The directory holding Zasper Hub's per-user auth files."""
    explicit = os.environ.get("ZASPERHUB_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    from jupyter_core.paths import jupyter_config_dir

    return Path(jupyter_config_dir()) / "zasperhub"


def password_path() -> Path:
    """The file storing the argon2 hash of the `--protected=true` password."""
    return config_dir() / PASSWORD_FILENAME


def cookie_secret_path() -> Path:
    """The file storing the key that signs browser-session cookies."""
    return config_dir() / COOKIE_SECRET_FILENAME


def write_private_file(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkstemp already creates 0600; chmod guards against odd umask handling.
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_private_file(path: Path) -> bytes | None:
    """The content of a secret file, or None when it does not exist.

    A file others can read is tightened to 0600 (with a warning) rather than
    refused, so an old copy made with a loose umask keeps working safely.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s was readable by other users; restricting it to mode 0600", path)
        os.chmod(path, 0o600)
    return path.read_bytes()


def load_or_create_cookie_secret(path: Path | None = None) -> bytes:
    """The persisted cookie secret, created on first use.

    Persisting it lets browser sessions survive a server restart.  A file
    too short to be a real key is replaced (its sessions could be forged).
    """
    path = path or cookie_secret_path()
    data = read_private_file(path)
    if data is not None and len(data.strip()) >= COOKIE_SECRET_BYTES:
        return data.strip()
    if data is not None:
        log.warning("Cookie secret in %s is too short; generating a new one", path)
    secret = secrets.token_hex(COOKIE_SECRET_BYTES).encode("ascii")
    write_private_file(path, secret)
    return secret
