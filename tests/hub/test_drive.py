"""Drive per user: tokens from auth_state reach the server, which refreshes them through the hub.

Real hub + proxy + SimpleLocalZasperSpawner + the real Drive backend, against
the Drive API double (a local server with an OAuth token endpoint).  After
every access token is expired, the server's next save still succeeds: the
backend's refresh hook asks the hub, the hub's authenticator exchanges the
refresh token, and the refresh token itself never reaches the server.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hub.hubproc import HubProcess, process_environ
from tests.support.drive_double import DriveDouble

pytestmark = pytest.mark.hub

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def drive() -> Iterator[DriveDouble]:
    double = DriveDouble().start()
    yield double
    double.stop()


@pytest.fixture(scope="module")
def hub(drive: DriveDouble, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    client = drive.add_client()
    config = f"""
c.JupyterHub.authenticator_class = "tests.hub.drive_auth.DriveDoubleAuthenticator"
c.DriveDoubleAuthenticator.password = c.DummyAuthenticator.password
c.DriveDoubleAuthenticator.token_url = {drive.token_uri!r}
c.DriveDoubleAuthenticator.drive_url = {drive.url!r}
c.DriveDoubleAuthenticator.client_id = {client["client_id"]!r}
c.DriveDoubleAuthenticator.client_secret = {client["client_secret"]!r}
c.DriveDoubleAuthenticator.refresh_token = {client["refresh_token"]!r}
c.Authenticator.enable_auth_state = True
c.Authenticator.auth_refresh_age = 1
enable_drive_token_refresh(c)
c.ZasperSpawnerMixin.server_args = ["--DriveBackend.root_url={drive.url}"]
"""
    env = {"JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32), "PYTHONPATH": str(REPO)}
    hub = HubProcess(tmp_path_factory.mktemp("hub-drive"), storage_url="gdrive://root", extra_config=config, env=env)
    hub.refresh_token = client["refresh_token"]  # type: ignore[attr-defined]
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()


def notebook(text: str) -> dict:
    return {"type": "notebook", "content": {"cells": [{"cell_type": "markdown", "id": "c1", "metadata": {}, "source": text}],
                                            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}


def test_drive_tokens_refresh_through_the_hub(hub: HubProcess, drive: DriveDouble) -> None:
    hub.login("carol")  # stores the OAuth tokens in carol's auth_state
    hub.start_server("carol")
    client = httpx.Client(base_url=f"{hub.url}/user/carol", headers={"Authorization": f"token {hub.user_token('carol')}"}, timeout=60)
    r = client.put("/api/contents/first.ipynb", json=notebook("one"))
    assert r.status_code in (200, 201), r.text
    assert drive.find("root", "first.ipynb") is not None

    env = next(process_environ(p) for p in hub.server_pids() if process_environ(p).get("JUPYTERHUB_USER") == "carol")
    assert env.get("ZASPERHUB_GDRIVE_ACCESS_TOKEN")
    assert hub.refresh_token not in "".join(env.values())  # type: ignore[attr-defined]

    issued_before = sum(1 for m, p, _ in drive.requests if p.endswith("/token"))
    drive.expire_tokens()
    r = client.put("/api/contents/second.ipynb", json=notebook("two"))
    assert r.status_code in (200, 201), r.text
    assert drive.find("root", "second.ipynb") is not None
    issued_after = sum(1 for m, p, _ in drive.requests if p.endswith("/token"))
    assert issued_after > issued_before, "the hub did not exchange the refresh token"
    assert "Refreshing Drive token for carol" in hub.log()
