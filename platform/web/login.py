"""Login and logout pages, and JupyterHub's OAuth callback.

`/login` shows a small form (plain HTML + CSS, no scripts) for the password
or the token, checks the form's XSRF token, applies the provider's
per-client back-off, and starts a signed session cookie.  In hub mode it
instead starts JupyterHub's OAuth flow (state cookie + PKCE), and
`/oauth_callback` finishes it, both through `zasperhub.auth.hub_web`.
`next` is only ever a local path under the base URL.
"""

from __future__ import annotations

import html
import logging

from tornado import web
from zasperhub.auth import web as auth_web
from zasperhub.auth.redirects import safe_next_url
from zasperhub.platform.web.base import BaseHandler
from zasperhub.platform.web.util import url_path_join

log = logging.getLogger("zasperhub")

#: Form fields longer than this are refused before any check.
MAX_SECRET_LENGTH = 4096

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Log in · Zasper Hub</title>
<style>
  /* The UI's palette (platform/ui/src/style.css), light and dark. */
  :root {{ color-scheme: light dark; --bg: #ffffff; --bg2: #f6f7f9; --fg: #1d2125; --muted: #68717a;
          --border: #d9dde2; --accent: #2f6fdb; --accent-fg: #fff; --danger: #c62828; --error-bg: #fff1f0; }}
  @media (prefers-color-scheme: dark) {{ :root {{ --bg: #1b1e23; --bg2: #23272e; --fg: #dde1e6; --muted: #98a1ab;
          --border: #3a4049; --accent: #5b9bff; --accent-fg: #0d1117; --danger: #ff6b6b; --error-bg: #3a2326; }} }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; min-height: 100vh; display: grid; place-items: center; background: var(--bg2); color: var(--fg);
         font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
  main {{ width: min(360px, 92vw); background: var(--bg); border: 1px solid var(--border);
         border-radius: 10px; padding: 28px 28px 24px; box-shadow: 0 8px 24px rgba(0,0,0,.06); }}
  h1 {{ margin: 0 0 4px; font-size: 20px; font-weight: 600; }}
  p.sub {{ margin: 0 0 20px; color: var(--muted); font-size: 14px; }}
  label {{ display: block; font-weight: 500; margin-bottom: 6px; }}
  input[type=password] {{ width: 100%; padding: 9px 11px; font: inherit; border: 1px solid var(--border);
         border-radius: 6px; background: transparent; color: inherit; }}
  input[type=password]:focus {{ outline: 2px solid var(--accent); outline-offset: 1px; border-color: var(--accent); }}
  button {{ margin-top: 16px; width: 100%; padding: 9px; font: inherit; font-weight: 600; color: var(--accent-fg);
         background: var(--accent); border: 0; border-radius: 6px; cursor: pointer; }}
  button:hover {{ filter: brightness(1.08); }}
  .error {{ margin: 0 0 16px; padding: 8px 11px; border-radius: 6px; color: var(--danger); background: var(--error-bg);
         border: 1px solid currentColor; font-size: 14px; }}
</style>
</head>
<body>
<main>
  <h1>Zasper Hub</h1>
  <p class="sub">{subtitle}</p>
  {error}
  <form method="post" action="{action}">
    {xsrf}
    <input type="hidden" name="next" value="{next}">
    <label for="secret">{label}</label>
    <input type="password" id="secret" name="{field}" autocomplete="{autocomplete}" autofocus required maxlength="{maxlength}">
    <button type="submit">Log in</button>
  </form>
</main>
</body>
</html>
"""


class LoginHandler(BaseHandler):
    """`/login`: the form (password/token modes) or the start of hub OAuth."""

    auth_required = False

    def _next(self) -> str:
        return safe_next_url(self.get_argument("next", None), self.base_url)

    def render_form(self, error: str = "", status: int = 200) -> None:
        """Send the login page with an optional error message."""
        provider = self.zasper.identity_provider
        kind = provider.login_secret_kind or "password"
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(
            _PAGE.format(
                subtitle="Enter the server's password." if kind == "password" else "Enter the server's token.",
                error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
                action=html.escape(url_path_join(self.base_url, "login")),
                xsrf=self.xsrf_form_html(),
                next=html.escape(self._next()),
                label="Password" if kind == "password" else "Token",
                field=kind,
                autocomplete="current-password" if kind == "password" else "off",
                maxlength=MAX_SECRET_LENGTH,
            )
        )

    def get(self) -> None:
        provider = self.zasper.identity_provider
        next_url = self._next()
        if self.current_user is not None:
            self.redirect(next_url)
            return
        if getattr(provider, "hub_auth", None) is not None:
            self._start_hub_oauth(next_url)
            return
        if provider.login_secret_kind is None:
            raise web.HTTPError(404, "This server has no login page")
        self.render_form()

    def _start_hub_oauth(self, next_url: str) -> None:
        """Redirect to the hub's authorize URL with a fresh state and PKCE challenge."""
        from zasperhub.auth.hub_web import begin_login

        begin_login(self, self.zasper.identity_provider.hub_auth, next_url)  # type: ignore[attr-defined]

    async def post(self) -> None:
        provider = self.zasper.identity_provider
        kind = provider.login_secret_kind
        if kind is None:
            raise web.HTTPError(404, "This server has no login form")
        try:
            # The form is anonymous, so BaseHandler.prepare did not check XSRF;
            # a login CSRF would sign the victim into the attacker's session.
            web.RequestHandler.check_xsrf_cookie(self)
        except web.HTTPError:
            self.render_form("The form expired or came from another site; please try again.", status=403)
            return
        # strip=False: tornado strips by default, which would make "pw " match "pw".
        secret = self.get_body_argument(kind, "", strip=False)
        if not secret:
            self.render_form(f"Enter the {kind}.", status=400)
            return
        if len(secret) > MAX_SECRET_LENGTH:
            self.render_form(f"Invalid {kind}.", status=401)
            return
        client = self.request.remote_ip or "?"
        outcome = await provider.login(secret, client)
        if outcome.user is None:
            if outcome.retry_after > 0:
                self.set_header("Retry-After", str(int(outcome.retry_after) + 1))
                self.render_form(outcome.error or "Too many attempts", status=429)
            else:
                self.render_form(outcome.error or f"Invalid {kind}.", status=401)
            return
        log.info("User %s logged in from %s", outcome.user.username, client)
        auth_web.start_session(self, provider, outcome.user.username, self.zasper.session_max_age)
        # A fresh XSRF token for the new session (the old one was anonymous).
        self.clear_cookie("_xsrf", path=self.base_url)
        self.redirect(self._next())


class LogoutHandler(BaseHandler):
    """`/logout`: end the browser session (and the hub's, in hub mode)."""

    auth_required = False

    def _logout(self) -> None:
        provider = self.zasper.identity_provider
        auth_web.end_session(self, provider, self.zasper.session_max_age)
        self.clear_cookie("_xsrf", path=self.base_url)
        hub_logout = getattr(provider, "hub_logout_url", None)
        if hub_logout is not None:
            self.redirect(hub_logout())
            return
        target = provider.login_url()
        self.redirect(url_path_join(self.base_url, target) if target else self.base_url)

    def get(self) -> None:
        self._logout()

    def post(self) -> None:
        self._logout()


class OAuthCallbackHandler(BaseHandler):
    """`/oauth_callback`: finish hub OAuth (404 when not in hub mode).

    `hub_web.finish_login` checks the state against its cookie (so a
    replayed or forged state gets 403), exchanges the code with the PKCE
    verifier, and stores the token in a signed cookie.
    """

    auth_required = False

    async def get(self) -> None:
        hub_auth = getattr(self.zasper.identity_provider, "hub_auth", None)
        if hub_auth is None:
            raise web.HTTPError(404, "Not in JupyterHub mode")
        from zasperhub.auth.hub_web import finish_login

        await finish_login(self, hub_auth)


handlers = [
    (r"/login", LoginHandler),
    (r"/logout", LogoutHandler),
    (r"/oauth_callback", OAuthCallbackHandler),
]
