"""The single-user server application: configuration, components, lifecycle.

`ZasperApp` is a traitlets `Application`, so configuration works the way
Jupyter users know: `--Class.trait=value` on the command line, a Python or
JSON config file, and a few short flags (`--port`, `--ip`, `--root-dir` …).
It builds the components (identity provider, contents, kernels, sessions),
mounts the handlers and runs until SIGINT/SIGTERM or `/api/shutdown`, then
shuts every kernel down so no process, port or connection file is leaked.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import secrets
import signal
import sys
from typing import Any

from tornado import httpserver, netutil, web
from traitlets import Bool, Float, Instance, Int, List, Unicode, default, validate
from traitlets.config import Application, catch_config_error
from zasperhub.auth.base import IdentityProvider
from zasperhub.auth.token import (
    TokenIdentityProvider,
    generate_token,
    token_from_environment,
)
from zasperhub.platform import server_loop
from zasperhub.platform.browser_ports import browsers_refuse
from zasperhub.platform.version import __version__
from zasperhub.platform.web import routes
from zasperhub.platform.web.base import is_poll, log_request
from zasperhub.platform.web.util import utcnow

log = logging.getLogger("zasperhub")


def use_batch_scheduling() -> None:
    """Put this process (and the threads it starts later) under SCHED_BATCH, where Linux allows it.

    The server is I/O-bound and wakes for every kernel message; under the
    normal policy each wake-up preempts whatever kernel is running on that
    CPU, which then resumes with cold caches.  SCHED_BATCH only skips that
    wake-up preemption: the server still gets its fair share, at the next
    scheduler tick at the latest.  No privilege is needed.  Kernels inherit
    the policy, so kernels do not preempt each other or the server on
    wake-up either: throughput work yields to whatever is running, and a
    CPU-bound cell runs as long a slice as the scheduler allows.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):  # not Linux, or a sandbox that forbids it: keep the normal policy
        pass


class StartupError(Exception):
    """A problem the user can fix, reported as one line without a traceback."""


class ZasperApp(Application):
    """Zasper Hub's single-user notebook server."""

    name = "zasperhub"
    version = __version__
    description = "A lean, Jupyter-compatible notebook server."

    aliases = {
        "ip": "ZasperApp.ip",
        "port": "ZasperApp.port",
        "root-dir": "ZasperApp.root_dir",
        "notebook-dir": "ZasperApp.root_dir",
        "base-url": "ZasperApp.base_url",
        "config": "ZasperApp.config_file",
        "contents": "ZasperApp.contents_url",
        "token": "ZasperApp.token",
        "protected": "ZasperApp.protected",
        "log-level": "Application.log_level",
    }
    flags = {
        "no-browser": ({"ZasperApp": {"open_browser": False}}, "Do not open a web browser."),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Verbose logging."),
    }
    subcommands = {
        "password": ("zasperhub.auth.password_cli.PasswordApp", "Set or change the password for --protected=true."),
        "hub": ("zasperhub.spawners.hubapp.ZasperHubApp", "Start a JupyterHub configured for Zasper Hub."),
    }

    # -- network ---------------------------------------------------------------
    ip = Unicode("127.0.0.1", config=True, help="Address to bind.")
    port = Int(8048, config=True, help="Port to bind (0 picks a free one).")
    base_url = Unicode("/", config=True, help="URL prefix for every route.")
    open_browser = Bool(True, config=True, help="Open the UI in a browser at start.")
    allow_remote_access = Bool(
        False, config=True, help="Accept any Host header (off: only loopback names, against DNS rebinding)."
    )
    local_hostnames = List(Unicode(), ["localhost"], config=True, help="Host names treated as local.")
    allow_origin = Unicode("", config=True, help="Origin allowed for cross-origin requests ('*' for any).")
    allow_origin_pat = Unicode("", config=True, help="Regular expression of allowed origins.")
    trust_xheaders = Bool(False, config=True, help="Trust X-Forwarded-* headers from a proxy.")

    # -- storage -----------------------------------------------------------------
    root_dir = Unicode(config=True, help="Directory served (and kernels' working area).")
    contents_url = Unicode(
        "", config=True, help="Where notebooks live: empty for root_dir on local disk, s3://bucket/prefix, gdrive://folder-id."
    )

    # -- auth --------------------------------------------------------------------
    token = Unicode(config=True, help="Token clients must present (default: $JUPYTER_TOKEN or random).")
    protected = Bool(False, config=True, help="Require a password login for browsers.")
    hub_mode = Bool(False, config=True, help="Launched by JupyterHub: authenticate through the hub.")
    cookie_secret = Instance(bytes, config=True, help="Key that signs browser-session cookies.")
    session_max_age = Float(14 * 24 * 3600.0, config=True, help="Lifetime of a browser session, seconds.")

    config_file = Unicode("", config=True, help="Configuration file to load (.py or .json).")
    batch_scheduling = Bool(
        True, config=True,
        help="Run the server and its kernels under Linux's SCHED_BATCH policy: their wake-ups then do not "
        "preempt a running process (an idle CPU still runs them at once).  Measured at 64 kernels x 10 requests/s on 2 cores "
        "(benchmarks/RESULTS.md): more replies per second, /api/status no slower.",
    )

    @default("root_dir")
    def _default_root_dir(self) -> str:
        return os.getcwd()

    @validate("root_dir")
    def _validate_root_dir(self, proposal: Any) -> str:
        return os.path.abspath(os.path.expanduser(proposal["value"]))

    @validate("base_url")
    def _validate_base_url(self, proposal: Any) -> str:
        value = proposal["value"].strip("/")
        return f"/{value}/" if value else "/"

    @default("token")
    def _default_token(self) -> str:
        configured = token_from_environment()
        if configured:
            return configured
        # A generated token is shown in the start-up URL; one the user chose
        # never is (it may be reused elsewhere, and logs are shared).
        self.token_generated = True
        return generate_token()

    @default("cookie_secret")
    def _default_cookie_secret(self) -> bytes:
        if self.protected and not self.hub_mode:
            # Password sessions survive a restart: the key is kept (0600)
            # in the user's config dir.
            from zasperhub.auth.paths import (
                cookie_secret_path,
                load_or_create_cookie_secret,
            )

            try:
                return load_or_create_cookie_secret()
            except OSError as e:
                raise StartupError(f"Cannot keep the cookie secret in {cookie_secret_path()}: {e.strerror or e}") from None
        return secrets.token_bytes(32)

    # -- lifecycle -----------------------------------------------------------------
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.started = utcnow()
        self.token_generated = False
        self._last_api_activity = self.started
        self._stop_event: asyncio.Event | None = None
        self.identity_provider: IdentityProvider
        self.contents_manager: Any = None
        self.kernel_registry: Any = None
        self.session_manager: Any = None
        self.http_server: httpserver.HTTPServer | None = None
        self.bound_port: int = 0

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        if self.subapp is not None:
            return
        if self.config_file:
            if not os.path.isfile(self.config_file):
                raise StartupError(f"Config file not found: {self.config_file}")
            directory, filename = os.path.split(os.path.abspath(self.config_file))
            self.load_config_file(filename, path=directory)
            # Command-line values win over the file's.
            self.update_config(self.cli_config)
        if self.hub_mode:
            from zasperhub.auth.hub import apply_hub_environment

            apply_hub_environment(self)
        self._configure_logging()

    def _configure_logging(self) -> None:
        log.setLevel(self.log_level)
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("[%(levelname).1s %(asctime)s %(name)s] %(message)s", "%H:%M:%S"))
            log.addHandler(handler)
        log.propagate = False

    # -- components ---------------------------------------------------------------
    def make_identity_provider(self) -> IdentityProvider:
        """Token auth by default; password or hub auth when configured."""
        from zasperhub.auth.base import AuthSetupError
        from zasperhub.auth.throttle import LoginThrottle

        cookie = f"zasperhub-session-{self.port}"
        try:
            if self.hub_mode:
                from zasperhub.auth.hub import make_hub_provider

                return make_hub_provider(self)
            if self.protected:
                from zasperhub.auth.password import make_password_provider

                return make_password_provider(self)
        except AuthSetupError as e:
            raise StartupError(str(e)) from None
        return TokenIdentityProvider(self.token, cookie_name=cookie, throttle=LoginThrottle(parent=self))

    def init_components(self) -> None:
        """Build storage, kernels and sessions (heavy backends import lazily)."""
        from zasperhub.contents.registry import open_contents
        from zasperhub.platform.kernels.registry import KernelRegistry
        from zasperhub.platform.sessions import SessionManager

        if not os.path.isdir(self.root_dir):
            raise StartupError(f"Root directory does not exist: {self.root_dir}")
        self.identity_provider = self.make_identity_provider()
        try:
            self.contents_manager = open_contents(self.contents_url, root_dir=self.root_dir, parent=self)
        except ValueError as e:  # ContentsConfigError: unknown scheme, missing extra, bad URL
            raise StartupError(str(e)) from None
        try:
            self.kernel_registry = KernelRegistry(parent=self, root_dir=self.root_dir)
        except ValueError as e:  # a malformed kernel_port_range
            raise StartupError(str(e)) from None
        self.session_manager = SessionManager(parent=self, kernel_registry=self.kernel_registry, contents_manager=self.contents_manager)

    def make_web_app(self) -> web.Application:
        """The tornado application with every route mounted."""
        settings: dict[str, Any] = {
            "zasper": self,
            "base_url": self.base_url,
            "cookie_secret": self.cookie_secret,
            "xsrf_cookies": False,  # checked in BaseHandler for cookie sessions only
            "xsrf_cookie_kwargs": {"path": self.base_url},
            "allow_remote_access": self.allow_remote_access,
            "local_hostnames": tuple(self.local_hostnames),
            "allow_origin": self.allow_origin,
            "allow_origin_pat": re.compile(self.allow_origin_pat) if self.allow_origin_pat else None,
            "log_function": log_request,
            "websocket_ping_interval": 30,
            "websocket_ping_timeout": 30,  # tornado refuses a timeout above the interval (warns per socket)
            "websocket_max_message_size": 256 * 1024 * 1024,
            "compress_response": True,
        }
        from zasperhub.platform.web.base import NotFoundHandler

        settings["default_handler_class"] = NotFoundHandler
        if self.hub_mode:
            from zasperhub.auth.hub import hub_version

            # The hub reads this on every response to spot version skew.
            settings["extra_headers"] = {"X-JupyterHub-Version": hub_version()}
        from zasperhub.platform.web.probe import Application as WebApplication

        return WebApplication(routes.collect_handlers(self.base_url), **settings)

    # -- activity ------------------------------------------------------------------
    def note_activity(self, handler: web.RequestHandler) -> None:
        """Record API use (polling endpoints do not count as activity)."""
        if not is_poll(type(handler)):
            self._last_api_activity = utcnow()

    def last_activity(self) -> Any:
        """The latest of API use and kernel activity."""
        latest = self._last_api_activity
        if self.kernel_registry is not None:
            kernel_latest = self.kernel_registry.last_activity()
            if kernel_latest is not None and kernel_latest > latest:
                latest = kernel_latest
        return latest

    # -- run -----------------------------------------------------------------------
    def display_url(self, host: str | None = None) -> str:
        """The URL to open, with the token in token mode."""
        host = host or (self.ip if self.ip not in ("", "0.0.0.0", "::") else "127.0.0.1")
        if ":" in host:
            host = f"[{host}]"
        url = f"http://{host}:{self.bound_port}{self.base_url}"
        if type(self.identity_provider) is TokenIdentityProvider and self.token:
            url += f"?token={self.token}" if self.token_generated else "?token=..."
        return url

    def bind(self) -> list[Any]:
        """Bind the listening sockets, translating the usual failures to one line."""
        try:
            sockets = netutil.bind_sockets(self.port, self.ip or None)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise StartupError(f"Port {self.port} on {self.ip} is already in use; choose another with --port") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise StartupError(f"Cannot bind to {self.ip}: address not available on this machine") from None
            if e.errno == errno.EACCES:
                raise StartupError(f"Permission denied binding {self.ip}:{self.port}") from None
            raise StartupError(f"Cannot listen on {self.ip}:{self.port}: {e.strerror}") from None
        self.bound_port = sockets[0].getsockname()[1]
        if browsers_refuse(self.bound_port):
            # The server works (curl, kernels' clients) but no browser tab or fetch() will reach it.
            log.warning("Browsers refuse to connect to port %d (a Fetch-standard 'bad port'); "
                        "choose another with --port to use the web UI", self.bound_port)
        return sockets

    def request_stop(self) -> None:
        """Ask the running server to shut down cleanly."""
        if self._stop_event is not None:
            self._stop_event.set()

    async def serve(self) -> None:
        """Run until asked to stop, then release every resource."""
        self._stop_event = asyncio.Event()
        self.init_components()
        sockets = self.bind()
        app = self.make_web_app()
        self.http_server = httpserver.HTTPServer(app, xheaders=self.trust_xheaders, max_body_size=512 * 1024 * 1024)
        self.http_server.add_sockets(sockets)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        if hasattr(self.identity_provider, "start"):
            await self.identity_provider.start()
        await self.kernel_registry.start()
        log.info("Zasper Hub %s serving %s", __version__, self.contents_manager.describe())
        print(f"Zasper Hub is running at:\n    {self.display_url()}", flush=True)
        if self.open_browser and not self.hub_mode:
            self._launch_browser()
        try:
            await self._stop_event.wait()
        finally:
            await self.cleanup()

    async def cleanup(self) -> None:
        """Stop listening, shut every kernel down, close the stores."""
        log.info("Shutting down: stopping kernels")
        if self.http_server is not None:
            self.http_server.stop()
        if self.kernel_registry is not None:
            await self.kernel_registry.shutdown_all()
        if self.contents_manager is not None:
            await self.contents_manager.close()
        if hasattr(self.identity_provider, "stop"):
            await self.identity_provider.stop()
        if self.http_server is not None:
            await self.http_server.close_all_connections()

    def _launch_browser(self) -> None:
        import threading
        import webbrowser

        url = self.display_url()
        threading.Thread(target=lambda: webbrowser.open(url, new=2), daemon=True).start()

    def start(self) -> None:
        if self.batch_scheduling:
            use_batch_scheduling()
        if self.subapp is not None:
            self.subapp.start()
            return
        try:
            # The server's own loop: the read gate's deadline in its selector, a lean pass (server_loop.py).
            server_loop.run(self.serve())
        except StartupError as e:
            print(f"zasperhub: error: {e}", file=sys.stderr)
            sys.exit(1)


def run(argv: list[str] | None = None, **kwargs: Any) -> None:
    """Entry point shared by the console scripts."""
    app = ZasperApp.instance(**kwargs)
    try:
        app.initialize(argv)
    except StartupError as e:
        print(f"zasperhub: error: {e}", file=sys.stderr)
        sys.exit(1)
    app.start()


