"""`zasperhub password`: set or change the password for `--protected=true`.

Interactive use prompts twice without echo.  Scripts pipe the password on
standard input (first line; used automatically when stdin is not a
terminal, or forced with `--stdin`).  Only the argon2 hash is written, to
the user's config dir with mode 0600.
"""

from __future__ import annotations

import getpass
import sys

from traitlets import Bool
from traitlets.config import Application

from zasperhub.auth.base import AuthSetupError
from zasperhub.auth.password import (
    MAX_PASSWORD_LENGTH,
    PasswordStore,
    validate_new_password,
)


class PasswordApp(Application):
    """Set the password browsers log in with under `--protected=true`."""

    name = "zasperhub-password"
    description = "Set or change the password for `zasperhub --protected=true`."

    read_stdin = Bool(False, config=True, help="Read the password from standard input instead of prompting.")
    flags = {"stdin": ({"PasswordApp": {"read_stdin": True}}, "Read the password from standard input.")}

    def _fail(self, message: str) -> None:
        print(f"zasperhub password: error: {message}", file=sys.stderr)
        self.exit(1)

    def read_password(self) -> str:
        """The new password, from a terminal prompt (twice) or stdin."""
        if self.read_stdin or not sys.stdin.isatty():
            # Read a bounded amount so a huge pipe cannot exhaust memory.
            line = sys.stdin.readline(MAX_PASSWORD_LENGTH * 4 + 2)
            if not line.strip():
                raise EOFError
            return line.rstrip("\r\n")
        first = getpass.getpass("New password: ")
        validate_new_password(first)
        second = getpass.getpass("Repeat password: ")
        if first != second:
            raise ValueError("Passwords do not match")
        return first

    def start(self) -> None:
        store = PasswordStore()
        try:
            password = self.read_password()
            existed = store.path.exists()
            store.set_password(password)
        except (ValueError, AuthSetupError) as e:
            self._fail(str(e))
            return
        except (EOFError, KeyboardInterrupt):
            self._fail("no password given; nothing changed")
            return
        except OSError as e:
            self._fail(f"cannot write {store.path}: {e.strerror or e}")
            return
        verb = "changed" if existed else "set"
        print(f"Password {verb}; hash stored in {store.path}")
        if existed:
            print("Existing browser sessions are logged out.")
