"""Helpers for auth integration tests: browser-like login over real HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

XSRF_FIELD = re.compile(r'name="_xsrf" value="([^"]+)"')


def set_password(config_dir: Path, password: str) -> subprocess.CompletedProcess[str]:
    """Run `zasperhub password` with the password on stdin."""
    env = dict(os.environ, ZASPERHUB_CONFIG_DIR=str(config_dir))
    return subprocess.run(
        [sys.executable, "-m", "zasperhub.platform.cli", "password"],
        input=password + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def login_form(client: httpx.Client, next_url: str | None = None) -> str:
    """GET the login page; returns the form's _xsrf value (the cookie is kept by the client)."""
    params = {"next": next_url} if next_url else None
    page = client.get("/login", params=params)
    assert page.status_code == 200, page.text
    match = XSRF_FIELD.search(page.text)
    assert match, "login form has no _xsrf field"
    return match.group(1)


def login(client: httpx.Client, password: str, next_url: str | None = None) -> httpx.Response:
    """Submit the login form like a browser."""
    xsrf = login_form(client, next_url)
    data = {"_xsrf": xsrf, "password": password}
    if next_url is not None:
        data["next"] = next_url
    return client.post("/login", data=data)


def set_cookie_headers(response: httpx.Response, name_prefix: str) -> list[str]:
    """The raw Set-Cookie headers whose cookie name starts with `name_prefix`."""
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(name_prefix)]
