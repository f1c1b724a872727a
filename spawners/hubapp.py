"""`zasperhub hub`: run a JupyterHub configured for Zasper Hub.

On first run it writes an editable config file into the data directory
(`./zasperhub-hub/` by default), then replaces itself with
`python -m jupyterhub -f <that file>` so the hub is an ordinary JupyterHub
process (signals, logs and exit codes are JupyterHub's own).  The proxy,
configurable-http-proxy, is checked before the hub starts so a missing one is
a one-line error that says how to install it, not a traceback.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, ClassVar

from traitlets import Bool, Int, Unicode, default
from traitlets.config import Application
from zasperhub.platform.version import __version__
from zasperhub.spawners.hubconfig import DB_URL_ENV, render_config

CONFIG_NAME = "zasperhub_hub_config.py"
PROXY_INSTALL_HINT = (
    "Install configurable-http-proxy (the hub's proxy) with npm (Node.js ≥ 18):\n"
    "    npm install -g configurable-http-proxy\n"
    "or point the hub at it: --proxy-command=/path/to/configurable-http-proxy"
)


#: Options that only fill in a newly generated config file.
_NEW_CONFIG_ONLY = {"ip", "port", "authenticator", "storage_url", "idle_timeout"}


class HubStartError(Exception):
    """A problem the admin can fix, printed as a message without a traceback."""


class ZasperHubApp(Application):
    """Start a JupyterHub configured for Zasper Hub."""

    name = "zasperhub-hub"
    version = __version__
    description = "Start a JupyterHub whose users get zasperhub-singleuser servers."

    aliases: ClassVar[dict[str, str]] = {
        "data-dir": "ZasperHubApp.data_dir",
        "config": "ZasperHubApp.config_file",
        "db-url": "ZasperHubApp.db_url",
        "ip": "ZasperHubApp.ip",
        "port": "ZasperHubApp.port",
        "authenticator": "ZasperHubApp.authenticator",
        "storage-url": "ZasperHubApp.storage_url",
        "idle-timeout": "ZasperHubApp.idle_timeout",
        "proxy-command": "ZasperHubApp.proxy_command",
        "log-level": "Application.log_level",
    }
    flags: ClassVar[dict[str, Any]] = {
        "generate-config": (
            {"ZasperHubApp": {"generate_only": True}},
            "Write the config file (if missing) and exit without starting the hub.",
        ),
    }

    data_dir = Unicode("zasperhub-hub", config=True, help="Directory for the config file, SQLite database and secrets.")
    config_file = Unicode("", config=True, help="Config file to use (default: DATA_DIR/zasperhub_hub_config.py).")
    db_url = Unicode("", config=True, help="SQLAlchemy URL of the hub database, e.g. postgresql://user:pw@host/db.")
    ip = Unicode("127.0.0.1", config=True, help="Public address of the hub (written to a new config file).")
    port = Int(8000, config=True, help="Public port of the hub (written to a new config file).")
    authenticator = Unicode("pam", config=True, help="Authenticator for a new config file: pam, dummy, google, …")
    storage_url = Unicode("", config=True, help="Per-user storage template for a new config file.")
    idle_timeout = Int(3600, config=True, help="Idle culler timeout in seconds for a new config file (0: off).")
    proxy_command = Unicode(config=True, help="configurable-http-proxy executable.")
    generate_only = Bool(False, config=True, help="Only write the config file.")

    @default("proxy_command")
    def _default_proxy(self) -> str:
        return shutil.which("configurable-http-proxy") or ""

    @property
    def config_path(self) -> Path:
        return Path(self.config_file or Path(self.data_dir) / CONFIG_NAME).resolve()

    def write_config(self) -> bool:
        """Write the config file unless it exists; True if written."""
        path = self.config_path
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render_config(
            str(Path(self.data_dir).resolve()),
            bind_url=f"http://{self.ip}:{self.port}",
            authenticator=self.authenticator,
            storage_url=self.storage_url,
            idle_timeout=self.idle_timeout,
        )
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        return True

    def hub_command(self) -> list[str]:
        """The JupyterHub command line (without secrets)."""
        cmd = [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)]
        if self.proxy_command:
            cmd.append(f"--ConfigurableHTTPProxy.command={self.proxy_command}")
        # `--JupyterHub.x=y`-style options for other classes go to JupyterHub.
        for section, values in self.cli_config.items():
            if section in ("ZasperHubApp", "Application", "ZasperApp"):
                continue
            for key, value in values.items():
                cmd.append(f"--{section}.{key}={value if isinstance(value, str) else repr(value)}")
        cmd.extend(self.extra_args)
        return cmd

    def hub_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.db_url:
            env[DB_URL_ENV] = self.db_url
        return env

    def check(self) -> None:
        """Fail early with a clear message for what an admin must install."""
        try:
            import jupyterhub  # noqa: F401
        except ImportError:
            raise HubStartError("JupyterHub is not installed: pip install 'zasperhub[hub]'") from None
        if not self.proxy_command:
            raise HubStartError(f"configurable-http-proxy was not found on PATH.\n{PROXY_INSTALL_HINT}")
        if not os.access(self.proxy_command, os.X_OK):
            raise HubStartError(f"{self.proxy_command} is not an executable file.\n{PROXY_INSTALL_HINT}")
        if self.db_url:
            check_db_driver(self.db_url)

    def start(self) -> None:
        try:
            written = self.write_config()
            if written:
                print(f"Wrote {self.config_path} — edit it to configure the hub.", flush=True)
            else:
                ignored = sorted(set(self.cli_config.get("ZasperHubApp", {})) & _NEW_CONFIG_ONLY)
                if ignored:
                    print(
                        f"zasperhub hub: warning: --{', --'.join(o.replace('_', '-') for o in ignored)} only apply to a new config file; "
                        f"edit {self.config_path} instead.",
                        file=sys.stderr,
                    )
            if self.generate_only:
                if not written:
                    print(f"{self.config_path} already exists; left unchanged.", flush=True)
                return
            self.check()
        except (HubStartError, OSError) as e:
            print(f"zasperhub hub: error: {e}", file=sys.stderr)
            sys.exit(1)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, self.hub_command(), self.hub_environment())


def check_db_driver(db_url: str) -> None:
    """Fail early when the SQLAlchemy URL names no installed driver."""
    try:
        from sqlalchemy.engine import make_url
    except ImportError:  # pragma: no cover - JupyterHub depends on SQLAlchemy
        return
    try:
        url = make_url(db_url)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy raises several types for bad URLs
        raise HubStartError(f"--db-url is not a valid SQLAlchemy URL: {e}") from None
    try:
        url.get_dialect().import_dbapi()
    except ImportError as e:
        hint = " (pip install 'psycopg[binary]')" if url.get_backend_name() == "postgresql" else ""
        raise HubStartError(f"The database driver for {url.drivername!r} is not installed: {e}{hint}") from None
    except Exception as e:  # noqa: BLE001 - unknown dialect names
        raise HubStartError(f"Unsupported database URL {url.drivername!r}: {e}") from None


def main(argv: list[str] | None = None) -> None:
    """Run `zasperhub hub` directly (also reachable as `python -m zasperhub.spawners.hubapp`)."""
    app = ZasperHubApp()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
