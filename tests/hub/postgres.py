"""A private PostgreSQL cluster (Debian's postgresql-15) on a free loopback port.

Runs as the `postgres` system user (initdb refuses root), in its own data
directory, listening on 127.0.0.1 only, trust auth for local connections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """None if a cluster can be started here, else why not."""
    if not (PG_BIN / "initdb").exists():
        return f"PostgreSQL binaries not found in {PG_BIN} (apt-get install postgresql-15)"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` system user"
    return None


class PostgresCluster:
    """initdb + pg_ctl start/stop; `url` is a SQLAlchemy URL for database `jupyterhub`."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are 0700 root, which the
        # postgres user cannot traverse.
        self.base = Path(tempfile.mkdtemp(prefix="zh-pg-"))
        self.data = self.base / "data"
        self.port = free_port()
        shutil.chown(self.base, "postgres", "postgres")
        os.chmod(self.base, 0o700)

    def _run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> PostgresCluster:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        opts = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.base / "pg.log"), "-w", "-t", "30", "start")
        self._run(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "jupyterhub")
        return self

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/jupyterhub"

    def stop(self) -> None:
        try:
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "20", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.base, ignore_errors=True)
