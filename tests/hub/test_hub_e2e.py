"""End to end: real JupyterHub + configurable-http-proxy + SimpleLocalZasperSpawner + SeaweedFS.

Two users log in, each gets a `zasperhub-singleuser` server storing notebooks
under their own S3 prefix with their own IAM key; neither can read the other's
notebooks through the API nor with their server's S3 key; a restart keeps the
notebooks (and rotates the key).  The whole module runs with SQLite and with
PostgreSQL as the hub database.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.hub import postgres
from tests.hub.hubproc import HubProcess, process_environ
from tests.hub.seaweed_iam import SeaweedWithIAM

pytestmark = [pytest.mark.hub, pytest.mark.s3]

BUCKET = "notebooks"
STORAGE = f"s3://{BUCKET}/users/{{safe_username}}/"


def notebook(text: str) -> dict:
    return {
        "type": "notebook",
        "content": {
            "cells": [{"cell_type": "markdown", "id": "c1", "metadata": {}, "source": text}],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        },
    }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedWithIAM]:
    with SeaweedWithIAM(tmp_path_factory.mktemp("seaweed")) as s3:
        yield s3  # no bucket: the hub creates it (s3_create_bucket)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hub(request: pytest.FixtureRequest, store: SeaweedWithIAM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    pg = None
    db_url = ""
    if request.param == "postgresql":
        why = postgres.available()
        if why:
            pytest.skip(why)
        pg = postgres.PostgresCluster().start()
        db_url = pg.url
    config = f"""
c.ZasperSpawnerMixin.s3_endpoint_url = {store.endpoint!r}
c.ZasperSpawnerMixin.s3_credentials = "iam"
c.ZasperSpawnerMixin.s3_create_bucket = True
"""
    env = {"AWS_ACCESS_KEY_ID": store.access_key, "AWS_SECRET_ACCESS_KEY": store.secret_key}
    hub = HubProcess(tmp_path_factory.mktemp(f"hub-{request.param}"), storage_url=STORAGE, extra_config=config, env=env, db_url=db_url)
    try:
        hub.start()
        yield hub
    finally:
        hub.stop()
        if pg is not None:
            pg.stop()


def user_client(hub: HubProcess, name: str) -> httpx.Client:
    token = hub.user_token(name)
    return httpx.Client(base_url=f"{hub.url}/user/{name}", headers={"Authorization": f"token {token}"}, timeout=60)


def server_s3_env(hub: HubProcess, name: str) -> dict[str, str]:
    """The S3 credentials the user's running server received (read from its process)."""
    for pid in hub.server_pids():
        env = process_environ(pid)
        if env.get("JUPYTERHUB_USER") == name:
            return env
    raise AssertionError(f"no running server process for {name}")


def test_two_users_get_private_servers(hub: HubProcess, store: SeaweedWithIAM) -> None:
    if hub.db_url:
        assert "postgresql" in hub.db_url
    users = ("alice", "bob")
    for name in users:
        browser = hub.login(name)
        # The browser path: spawn through the hub, then the OAuth dance into the server.
        r = browser.get("/hub/spawn", follow_redirects=True)
        assert r.status_code == 200, r.text[:500]
        hub.wait_server(name, True)
        # What the spawn-pending page's script then does: open the server.
        r = browser.get(f"/user/{name}/", follow_redirects=True)
        assert r.status_code == 200, r.text[:500]
        assert str(r.url).startswith(f"{hub.url}/user/{name}/"), r.url
        listing = browser.get(f"/user/{name}/api/contents", params={"content": "1"})
        assert listing.status_code == 200, listing.text[:500]

    clients = {name: user_client(hub, name) for name in users}
    for name, client in clients.items():
        r = client.put("/api/contents/mine.ipynb", json=notebook(f"written by {name}"))
        assert r.status_code in (200, 201), r.text

    # Objects land under each user's prefix (checked with the store's admin key).
    admin = store.client()
    for name in users:
        keys = [o["Key"] for o in admin.list_objects_v2(Bucket=BUCKET, Prefix=f"users/{name}/").get("Contents", [])]
        assert f"users/{name}/mine.ipynb" in keys, keys
        body = json.loads(admin.get_object(Bucket=BUCKET, Key=f"users/{name}/mine.ipynb")["Body"].read())
        source = body["cells"][0]["source"]
        assert ("".join(source) if isinstance(source, list) else source) == f"written by {name}"

    # Through the API: each reads their own, and is refused on the other's server.
    for name, other in (("alice", "bob"), ("bob", "alice")):
        own = clients[name].get("/api/contents/mine.ipynb")
        assert own.status_code == 200 and own.json()["content"]["cells"][0]["source"] == f"written by {name}"
        token = clients[name].headers["Authorization"]
        foreign = httpx.get(f"{hub.url}/user/{other}/api/contents/mine.ipynb", headers={"Authorization": token}, timeout=30)
        assert foreign.status_code in (403, 404), foreign.status_code
        assert "written by" not in foreign.text

    # With the S3 key its server holds, a user cannot reach the other's prefix.
    bob_env = server_s3_env(hub, "bob")
    assert "AWS_SECRET_ACCESS_KEY" in bob_env and bob_env["AWS_ACCESS_KEY_ID"] != store.access_key
    bob_s3 = store.client_for(bob_env["AWS_ACCESS_KEY_ID"], bob_env["AWS_SECRET_ACCESS_KEY"])
    assert bob_s3.get_object(Bucket=BUCKET, Key="users/bob/mine.ipynb")["Body"].read()
    for denied in (
        lambda: bob_s3.get_object(Bucket=BUCKET, Key="users/alice/mine.ipynb"),
        lambda: bob_s3.put_object(Bucket=BUCKET, Key="users/alice/evil.ipynb", Body=b"{}"),
        lambda: bob_s3.list_objects_v2(Bucket=BUCKET, Prefix="users/alice/"),
    ):
        with pytest.raises(ClientError) as info:
            denied()
        assert info.value.response["Error"]["Code"] == "AccessDenied"
    # Secrets travel in the environment, never on the command line.
    for pid in hub.server_pids():
        import psutil

        cmdline = " ".join(psutil.Process(pid).cmdline())
        assert store.secret_key not in cmdline and bob_env["AWS_SECRET_ACCESS_KEY"] not in cmdline


def test_restart_keeps_notebooks_and_rotates_key(hub: HubProcess, store: SeaweedWithIAM) -> None:
    if not hub.server_ready("alice"):
        hub.start_server("alice")
    client = user_client(hub, "alice")
    r = client.put("/api/contents/kept.ipynb", json=notebook("survives a restart"))
    assert r.status_code in (200, 201), r.text
    old_key = server_s3_env(hub, "alice")

    hub.stop_server("alice")
    assert not any(process_environ(p).get("JUPYTERHUB_USER") == "alice" for p in hub.server_pids())
    # Stopping revokes the server's key.
    stale = store.client_for(old_key["AWS_ACCESS_KEY_ID"], old_key["AWS_SECRET_ACCESS_KEY"])
    with pytest.raises(ClientError):
        stale.get_object(Bucket=BUCKET, Key="users/alice/kept.ipynb")

    hub.start_server("alice")
    r = client.get("/api/contents/kept.ipynb")
    assert r.status_code == 200, r.text
    assert r.json()["content"]["cells"][0]["source"] == "survives a restart"
    assert server_s3_env(hub, "alice")["AWS_ACCESS_KEY_ID"] != old_key["AWS_ACCESS_KEY_ID"]
    # The rendered storage URL is remembered in the spawner state.
    state_dir = Path(hub.homes / "alice")
    assert state_dir.is_dir()
