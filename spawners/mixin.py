"""`ZasperSpawnerMixin`: turn any JupyterHub spawner into a Zasper spawner.

Put it first in the bases (``class MySpawner(ZasperSpawnerMixin, DockerSpawner)``).
It sets the command to `zasperhub-singleuser`, renders the user's storage URL
from a template (``s3://notebooks/users/{username}/``), hands storage
credentials to the server through its environment (never argv, which any
local user can read in `ps`), and remembers the rendered storage URL in the
spawner state so that changing the template later does not strand a user's
existing notebooks.

Storage modes, chosen by the scheme of `storage_url`:

- empty: the server's working directory on its own disk;
- ``s3://bucket/prefix/``: with `s3_credentials="shared"` every server gets the
  hub's configured key pair (simple, but any user can reach any prefix); with
  `s3_credentials="iam"` each user gets their own key confined to their prefix
  (see `zasperhub.spawners.s3iam`);
- ``gdrive://folder``: the user's Google tokens from the authenticator's
  `auth_state` (see `zasperhub.spawners.authstate`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Dict, Enum, List, Unicode, default
from traitlets.config import LoggingConfigurable
from zasperhub.spawners.naming import iam_user_name, safe_username

#: Buckets this hub process already checked (s3_create_bucket).
_ENSURED_BUCKETS: set[str] = set()

#: Environment variables that carry secrets to the single-user server.
S3_KEY_ENV = "AWS_ACCESS_KEY_ID"
S3_SECRET_ENV = "AWS_SECRET_ACCESS_KEY"


class StorageConfigError(ValueError):
    """The storage settings cannot produce a usable URL for this user."""


class ZasperSpawnerMixin(LoggingConfigurable):
    """Launch `zasperhub-singleuser` with per-user storage and credentials.

    A configurable in its own right, so ``c.ZasperSpawnerMixin.storage_url``
    configures every Zasper spawner class at once.
    """

    storage_url = Unicode(
        "",
        config=True,
        help="""Where each user's notebooks live, as a template.

        Fields: {username} (as in JupyterHub), {safe_username} (lowercase
        [a-z0-9._-], unique), {servername}.  Examples:
        "s3://notebooks/users/{safe_username}/", "gdrive://root".
        Empty: the server's working directory.""",
    )
    remember_storage_url = Bool(
        True,
        config=True,
        help="Keep using the URL rendered at a user's first start even if storage_url changes later.",
    )
    s3_endpoint_url = Unicode("", config=True, help="S3 endpoint for the servers (empty: AWS).")
    s3_region = Unicode("us-east-1", config=True, help="S3 region for the servers.")
    s3_credentials = Enum(
        ["shared", "iam"],
        "shared",
        config=True,
        help="""How servers get S3 credentials.

        shared: every server receives s3_access_key_id/s3_secret_access_key
        (no isolation between users: anyone's code can read any prefix).
        iam: the hub uses those admin credentials to give each user an IAM
        identity limited to their prefix and a fresh key at every start.""",
    )
    s3_access_key_id = Unicode(config=True, help="Key id the hub uses (default: $AWS_ACCESS_KEY_ID of the hub).")
    s3_secret_access_key = Unicode(config=True, help="Secret the hub uses (default: $AWS_SECRET_ACCESS_KEY of the hub).")
    s3_iam_endpoint_url = Unicode(
        config=True, help="IAM endpoint for s3_credentials='iam' (default: s3_endpoint_url; empty for AWS IAM)."
    )
    s3_create_bucket = Bool(
        False, config=True, help="Create the bucket (with the hub's key) at a user's start if it does not exist."
    )
    s3_iam_user_prefix = Unicode("zasper-", config=True, help="Prefix of the per-user IAM user names.")
    server_args = List(
        Unicode(), config=True, help="Extra arguments for zasperhub-singleuser ({username} etc. are expanded)."
    )
    storage_environment = Dict(
        config=True, help="Extra environment for the server (values are templates); use for backend settings."
    )

    @default("cmd")
    def _zasper_default_cmd(self) -> list[str]:
        return ["zasperhub-singleuser"]

    @default("s3_access_key_id")
    def _default_s3_key(self) -> str:
        return os.environ.get(S3_KEY_ENV, "")

    @default("s3_secret_access_key")
    def _default_s3_secret(self) -> str:
        return os.environ.get(S3_SECRET_ENV, "")

    @default("s3_iam_endpoint_url")
    def _default_iam_endpoint(self) -> str:
        return self.s3_endpoint_url

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The URL this user's server uses, once rendered (kept in state).
        self.zasper_storage_url = ""
        #: Secret environment for the next start; filled by `start`, never stored.
        self._zasper_secret_env: dict[str, str] = {}
        self._zasper_issuer: Any = None

    # -- templates -----------------------------------------------------------------
    def template_namespace(self) -> dict[str, Any]:
        ns = super().template_namespace()  # type: ignore[misc]
        ns.setdefault("username", self.user.name)  # type: ignore[attr-defined]
        ns["safe_username"] = safe_username(self.user.name)  # type: ignore[attr-defined]
        ns["servername"] = getattr(self, "name", "") or ""
        return ns

    def render_storage_url(self) -> str:
        """The storage URL for this user (the remembered one, if any)."""
        if self.remember_storage_url and self.zasper_storage_url:
            return self.zasper_storage_url
        if not self.storage_url:
            return ""
        try:
            url = self.storage_url.format(**self.template_namespace())
        except (KeyError, IndexError, ValueError) as e:
            raise StorageConfigError(f"storage_url template {self.storage_url!r} is invalid: {e}") from None
        scheme = urlsplit(url).scheme
        if scheme not in ("s3", "gdrive", "file"):
            raise StorageConfigError(f"storage_url must start with s3://, gdrive:// or file:// (got {url!r})")
        if scheme == "s3":
            bucket, _ = split_s3_url(url)
            if len(bucket) < 3:
                raise StorageConfigError(f"S3 bucket name too short in {url!r}")
        return url

    # -- command line and environment -----------------------------------------------
    def get_args(self) -> list[str]:
        """Address, URL prefix and storage as flags; secrets never appear here."""
        args: list[str] = []
        if self.ip:  # type: ignore[attr-defined]
            args.append(f"--ip={self.ip}")  # type: ignore[attr-defined]
        if self.port:  # type: ignore[attr-defined]
            args.append(f"--port={self.port}")  # type: ignore[attr-defined]
        server = getattr(self, "server", None)
        if server is not None and server.base_url:
            args.append(f"--base-url={server.base_url}")
        url = self.zasper_storage_url or self.render_storage_url()
        if url:
            args.append(f"--contents={url}")
            if url.startswith("s3://") and self.s3_endpoint_url:
                args.append(f"--S3Backend.endpoint_url={self.s3_endpoint_url}")
            if url.startswith("gdrive://"):
                from zasperhub.spawners.authstate import DRIVE_CONFIG_FILE

                args.append(f"--config={DRIVE_CONFIG_FILE}")
        ns = self.template_namespace()
        args.extend(a.format(**ns) for a in self.server_args)
        args.extend(super().get_args())  # type: ignore[misc]
        return args

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()  # type: ignore[misc]
        ns = self.template_namespace()
        for key, value in self.storage_environment.items():
            env[key] = value.format(**ns) if isinstance(value, str) else value
        url = self.zasper_storage_url
        if url.startswith("s3://") and self.s3_region:
            env.setdefault("AWS_DEFAULT_REGION", self.s3_region)
        env.update(self.zasper_secret_env())
        return env

    def zasper_secret_env(self) -> dict[str, Any]:
        """The secret part of the environment (subclasses may turn it into references)."""
        return dict(self._zasper_secret_env)

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> Any:
        """Render storage and obtain credentials, then start as the base spawner does."""
        await self.prepare_storage()
        return await super().start()  # type: ignore[misc]

    async def prepare_storage(self) -> None:
        """Fix this user's storage URL and fetch the credentials for it."""
        self.zasper_storage_url = self.render_storage_url()
        self._zasper_secret_env = await self.storage_credentials(self.zasper_storage_url)

    async def storage_credentials(self, url: str) -> dict[str, str]:
        """Secret environment for `url`: S3 keys (shared or per-user) or Drive tokens."""
        if url.startswith("s3://"):
            bucket, prefix = split_s3_url(url)
            if self.s3_create_bucket and bucket not in _ENSURED_BUCKETS:
                if await asyncio.to_thread(self._issuer().ensure_bucket_sync, self.s3_endpoint_url, bucket):
                    self.log.info("Created bucket %s", bucket)  # type: ignore[attr-defined]
                _ENSURED_BUCKETS.add(bucket)
            if self.s3_credentials == "iam":
                creds = await self._issuer().issue(self.iam_user, bucket, prefix)
                return {S3_KEY_ENV: creds.access_key_id, S3_SECRET_ENV: creds.secret_access_key}
            if self.s3_access_key_id:
                return {S3_KEY_ENV: self.s3_access_key_id, S3_SECRET_ENV: self.s3_secret_access_key}
            return {}
        if url.startswith("gdrive://"):
            from zasperhub.spawners.authstate import drive_environment

            auth_state = await self.user.get_auth_state()  # type: ignore[attr-defined]
            return drive_environment(auth_state, self.user.name)  # type: ignore[attr-defined]
        return {}

    @property
    def iam_user(self) -> str:
        """This user's IAM user name (s3_credentials='iam')."""
        return iam_user_name(self.user.name, self.s3_iam_user_prefix)  # type: ignore[attr-defined]

    def _issuer(self) -> Any:
        if self._zasper_issuer is None:
            from zasperhub.spawners.s3iam import IAMCredentialIssuer

            if not self.s3_access_key_id:
                raise StorageConfigError("s3_credentials='iam' needs admin credentials (s3_access_key_id or $AWS_ACCESS_KEY_ID)")
            self._zasper_issuer = IAMCredentialIssuer(
                self.s3_iam_endpoint_url, self.s3_access_key_id, self.s3_secret_access_key, region=self.s3_region
            )
        return self._zasper_issuer

    async def stop(self, now: bool = False) -> Any:
        """Stop the server, then revoke its per-user key so it cannot outlive the server."""
        result = await super().stop(now=now)  # type: ignore[misc]
        self._zasper_secret_env = {}
        if self.s3_credentials == "iam" and self.zasper_storage_url.startswith("s3://"):
            try:
                await self._issuer().revoke(self.iam_user)
            except Exception:  # the server is stopped either way; the next start rotates keys
                self.log.exception("Could not revoke S3 keys of %s", self.iam_user)  # type: ignore[attr-defined]
        return result

    # -- state -----------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        if self.zasper_storage_url:
            state["zasper_storage_url"] = self.zasper_storage_url
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)  # type: ignore[misc]
        self.zasper_storage_url = state.get("zasper_storage_url", "")

    def clear_state(self) -> None:
        # The storage URL is deliberately kept: it outlives a server instance.
        super().clear_state()  # type: ignore[misc]
        self._zasper_secret_env = {}


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` → ("bucket", "a/b/"); the prefix ends with "/" unless empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise StorageConfigError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""
