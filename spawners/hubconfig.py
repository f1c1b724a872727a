"""JupyterHub configuration for Zasper Hub: embedded defaults and the generated file.

`apply_defaults(c, data_dir)` is what every generated config file calls first;
the file then lists the settings admins change, ready to edit.  Keeping the
defaults in code means an upgrade improves them without rewriting the
admin's file, while anything the admin writes below still wins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: The idle culler's hub role: what it needs to find and stop idle servers.
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
#: Scopes of every server's own token (JupyterHub's defaults).
SERVER_SCOPES = ["users:activity!user", "access:servers!server"]
#: What Drive storage adds: a server reads its own user's auth_state to get
#: refreshed Google tokens.  A server token only receives scopes its user
#: holds, so users get it too (their own tokens, nobody else's).
AUTH_STATE_SCOPE = "admin:auth_state!user"

#: Environment variable `zasperhub hub --db-url` uses, so the URL (and its
#: password) never shows up in the hub's command line.
DB_URL_ENV = "ZASPERHUB_DB_URL"


_MEMORY_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
                 "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}


def k8s_cpu_cores(value: str | float | None) -> float | None:
    """A Kubernetes CPU quantity ("500m", "2", 1.5) in cores; None if unset."""
    if value in (None, ""):
        return None
    text = str(value)
    cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return cores or None


def k8s_memory_bytes(value: str | int | None) -> int | None:
    """A Kubernetes memory quantity ("256Mi", "1G", 1073741824) in bytes; None if unset."""
    if value in (None, ""):
        return None
    text = str(value)
    number = text.rstrip("kKMGTi")
    unit = text[len(number):]
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"not a Kubernetes memory quantity: {value!r}")
    return int(float(number) * _MEMORY_UNITS[unit])


def _configured(c: Any, name: str) -> list[dict[str, Any]]:
    """A list setting of `c.JupyterHub` if already set (unset ones are lazy placeholders)."""
    return list(c.JupyterHub[name]) if name in c.JupyterHub else []


def idle_culler_service(timeout: int, cull_every: int = 0, max_age: int = 0) -> dict[str, Any]:
    """The `jupyterhub-idle-culler` service entry (run by the hub, as the hub's user)."""
    command = [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={timeout}"]
    command.append(f"--cull-every={cull_every or max(1, min(300, timeout // 2))}")
    if max_age:
        command.append(f"--max-age={max_age}")
    return {"name": "idle-culler", "command": command}


def enable_idle_culler(c: Any, timeout: int, cull_every: int = 0, max_age: int = 0) -> None:
    """Add (or replace) the idle culler service and its role on config `c`."""
    services = [s for s in _configured(c, "services") if s.get("name") != "idle-culler"]
    if timeout > 0:
        services.append(idle_culler_service(timeout, cull_every, max_age))
    c.JupyterHub.services = services
    roles = [r for r in _configured(c, "load_roles") if r.get("name") != "idle-culler"]
    if timeout > 0:
        roles.append({"name": "idle-culler", "scopes": list(CULLER_SCOPES), "services": ["idle-culler"]})
    c.JupyterHub.load_roles = roles


def enable_drive_token_refresh(c: Any) -> None:
    """Let each user's server read that user's auth_state (Drive mode)."""
    roles = {r["name"]: r for r in _configured(c, "load_roles")}
    server = roles.setdefault("server", {"name": "server", "scopes": list(SERVER_SCOPES)})
    user = roles.setdefault("user", {"name": "user", "scopes": ["self"]})
    for role in (server, user):
        if AUTH_STATE_SCOPE not in role["scopes"]:
            role["scopes"] = [*role["scopes"], AUTH_STATE_SCOPE]
    c.JupyterHub.load_roles = list(roles.values())


def apply_defaults(c: Any, data_dir: str | os.PathLike[str], idle_timeout: int = 3600) -> None:
    """Zasper Hub's defaults on a JupyterHub config object `c`."""
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    c.JupyterHub.db_url = os.environ.get(DB_URL_ENV) or f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.pid_file = str(data / "jupyterhub-proxy.pid")
    c.JupyterHub.spawner_class = "zasperhub.spawners.local.LocalZasperSpawner"
    c.JupyterHub.bind_url = "http://127.0.0.1:8000"
    c.JupyterHub.hub_ip = "127.0.0.1"
    # Servers report activity themselves; the proxy poll is a slow backstop.
    c.JupyterHub.last_activity_interval = 300
    c.Spawner.default_url = "/"
    c.Spawner.http_timeout = 30
    c.JupyterHub.load_roles = [{"name": "server", "scopes": list(SERVER_SCOPES)}]
    enable_idle_culler(c, idle_timeout)


CONFIG_TEMPLATE = '''\
"""Zasper Hub configuration (JupyterHub config file), generated by `zasperhub hub`.

Edit freely: settings below override the built-in defaults applied first.
Delete this file and run `zasperhub hub` again to regenerate it.
Every JupyterHub setting works here (https://jupyterhub.readthedocs.io).
"""

from zasperhub.spawners.hubconfig import apply_defaults, enable_drive_token_refresh, enable_idle_culler

c = get_config()  # noqa: F821 - provided by JupyterHub
apply_defaults(c, data_dir={data_dir!r})

# -- Where the hub is reached (the proxy's public address) ---------------------
c.JupyterHub.bind_url = {bind_url!r}

# -- Hub database ------------------------------------------------------------------
# SQLite in the data directory by default.  For PostgreSQL run
# `zasperhub hub --db-url postgresql://user:password@host/db` (kept out of argv),
# or set it here:
# c.JupyterHub.db_url = "postgresql://user:password@host:5432/jupyterhub"

# -- Who can log in ------------------------------------------------------------------
# System users by default (PAM).  To try the hub:  "dummy"  (any name, no password!)
# Google accounts with Drive storage:
#   c.JupyterHub.authenticator_class = "google"
#   c.GoogleOAuthenticator.client_id = "…"; c.GoogleOAuthenticator.client_secret = "…"
#   c.GoogleOAuthenticator.oauth_callback_url = "https://hub.example.org/hub/oauth_callback"
#   c.GoogleOAuthenticator.scope = ["openid", "email", "https://www.googleapis.com/auth/drive.file"]
#   c.GoogleOAuthenticator.extra_authorize_params = {{"access_type": "offline", "prompt": "consent"}}
#   c.GoogleOAuthenticator.enable_auth_state = True   # needs $JUPYTERHUB_CRYPT_KEY
#   c.GoogleOAuthenticator.auth_refresh_age = 60       # how stale a token the hub may hand out
#   enable_drive_token_refresh(c)                      # servers may read their user's tokens
c.JupyterHub.authenticator_class = {authenticator!r}
c.Authenticator.allow_all = {allow_all!r}

# -- Per-user servers ------------------------------------------------------------------
c.JupyterHub.spawner_class = {spawner_class!r}
# Where each user's notebooks live ("" = the user's home directory):
#   "s3://notebooks/users/{{safe_username}}/"   or   "gdrive://root"
c.ZasperSpawnerMixin.storage_url = {storage_url!r}
# S3: endpoint and the hub's credentials (default: $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY).
# c.ZasperSpawnerMixin.s3_endpoint_url = "http://minio.example.org:9000"
# "iam" gives every user a key limited to their own prefix (store must offer the IAM API).
# c.ZasperSpawnerMixin.s3_credentials = "iam"
c.Spawner.mem_limit = {mem_limit!r}

# -- Idle servers ------------------------------------------------------------------
# Stop servers idle longer than this many seconds (0: never).
enable_idle_culler(c, timeout={idle_timeout!r})
'''


def render_config(
    data_dir: str,
    *,
    bind_url: str = "http://127.0.0.1:8000",
    authenticator: str = "pam",
    storage_url: str = "",
    spawner_class: str = "zasperhub.spawners.local.LocalZasperSpawner",
    mem_limit: str | None = None,
    idle_timeout: int = 3600,
) -> str:
    """The text of a generated config file."""
    return CONFIG_TEMPLATE.format(
        data_dir=str(Path(data_dir).resolve()),
        bind_url=bind_url,
        authenticator=authenticator,
        allow_all=authenticator in ("pam", "dummy"),
        storage_url=storage_url,
        spawner_class=spawner_class,
        mem_limit=mem_limit,
        idle_timeout=idle_timeout,
    )
