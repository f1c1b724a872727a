"""Spawner logic without a hub: names, storage templates, args/env, state, pod spec, config.

Spawners are built with a small user object (name, url, auth_state) — the
part of JupyterHub's `User` they read.  The Kubernetes spawner gets a
kubeconfig pointing at a closed port: building a pod manifest never talks
to a cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from zasperhub.spawners.authstate import MissingAuthState, drive_environment
from zasperhub.spawners.hubconfig import (
    enable_drive_token_refresh,
    enable_idle_culler,
    render_config,
)
from zasperhub.spawners.local import SimpleLocalZasperSpawner
from zasperhub.spawners.mixin import StorageConfigError, split_s3_url
from zasperhub.spawners.naming import iam_user_name, safe_username
from zasperhub.spawners.s3iam import S3Credentials, prefix_policy


class HubUser:
    """What a spawner reads from JupyterHub's User."""

    def __init__(self, name: str, auth_state: dict[str, Any] | None = None) -> None:
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self._auth_state = auth_state

    async def get_auth_state(self) -> dict[str, Any] | None:
        return self._auth_state


HUB = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/", public_host="", url="http://127.0.0.1:8081/hub/")


def local_spawner(name: str = "alice", **kwargs: Any) -> SimpleLocalZasperSpawner:
    spawner = SimpleLocalZasperSpawner(user=HubUser(name, kwargs.pop("auth_state", None)), hub=HUB, **kwargs)
    spawner.api_token = "hub-token-for-server"
    return spawner


# -- names -------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alice", "bob-2", "a.b"])
def test_safe_names_are_kept(name: str) -> None:
    assert safe_username(name) == name


def test_unsafe_names_are_distinct_and_stable() -> None:
    names = ["Alice", "alice ", "a b", "a/b", "bob@example.org", "x" * 80, "ünï", "-a", "a..b"]
    safe = [safe_username(n) for n in names]
    assert len(set(safe)) == len(names)
    assert safe == [safe_username(n) for n in names]
    for s in safe:
        assert s == s.lower() and "/" not in s and len(s) <= 40 and s[0].isalnum()
    assert all(len(iam_user_name(n)) <= 64 for n in names)


# -- storage templates, args and env --------------------------------------------------
def test_s3_url_is_rendered_per_user_and_secrets_stay_out_of_argv() -> None:
    spawner = local_spawner(
        "Bob@Example.org",
        storage_url="s3://notebooks/users/{safe_username}/",
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_access_key_id="AKSHARED",
        s3_secret_access_key="very-secret",
    )
    spawner.port = 40123
    import asyncio

    asyncio.run(spawner.prepare_storage())
    url = spawner.zasper_storage_url
    assert url == f"s3://notebooks/users/{safe_username('Bob@Example.org')}/"
    args = spawner.get_args()
    assert spawner.cmd == ["zasperhub-singleuser"]
    assert f"--contents={url}" in args and "--S3Backend.endpoint_url=http://127.0.0.1:9000" in args
    assert "--port=40123" in args
    assert not any("very-secret" in a or "AKSHARED" in a for a in args)
    env = spawner.get_env()
    assert env["AWS_ACCESS_KEY_ID"] == "AKSHARED" and env["AWS_SECRET_ACCESS_KEY"] == "very-secret"
    assert env["JUPYTERHUB_API_TOKEN"] == "hub-token-for-server"


@pytest.mark.parametrize(
    ("template", "message"),
    [("s3://notebooks/{nosuchfield}/", "invalid"), ("http://x/{username}", "must start with"), ("s3://nb/{username}", "too short")],
)
def test_bad_storage_templates_fail_with_a_clear_error(template: str, message: str) -> None:
    spawner = local_spawner(storage_url=template)
    with pytest.raises(StorageConfigError, match=message):
        spawner.render_storage_url()


def test_storage_url_is_remembered_across_template_changes() -> None:
    first = local_spawner(storage_url="s3://notebooks/v1/{username}/")
    first.zasper_storage_url = first.render_storage_url()
    state = first.get_state()
    assert state["zasper_storage_url"] == "s3://notebooks/v1/alice/"
    first.clear_state()
    assert first.get_state()["zasper_storage_url"] == "s3://notebooks/v1/alice/"  # kept across stops

    later = local_spawner(storage_url="s3://notebooks/v2/{username}/")
    later.load_state(state)
    assert later.render_storage_url() == "s3://notebooks/v1/alice/"
    later.remember_storage_url = False
    later.zasper_storage_url = ""
    assert later.render_storage_url() == "s3://notebooks/v2/alice/"


def test_split_s3_url() -> None:
    assert split_s3_url("s3://bucket/a/b") == ("bucket", "a/b/")
    assert split_s3_url("s3://bucket") == ("bucket", "")
    with pytest.raises(StorageConfigError):
        split_s3_url("s3:///nobucket")


def test_prefix_policy_confines_objects_and_listing() -> None:
    policy = prefix_policy("notebooks", "users/alice/")
    objects, listing = policy["Statement"]
    assert objects["Resource"] == ["arn:aws:s3:::notebooks/users/alice/*"]
    assert "s3:DeleteObject" in objects["Action"] and "s3:ListBucket" not in objects["Action"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["users/alice/", "users/alice/*"]
    assert "s3cr3t-value" not in repr(S3Credentials("AK", "s3cr3t-value"))


def test_mem_limit_is_applied_in_the_child(tmp_path: Path) -> None:
    spawner = local_spawner(home_dir_template=str(tmp_path / "{username}"))
    spawner.mem_limit = 512 * 1024 * 1024
    preexec = spawner.make_preexec_fn("alice")
    code = "import resource; print(resource.getrlimit(resource.RLIMIT_DATA)[0])"
    out = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec, check=False, capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == str(512 * 1024 * 1024)
    assert (tmp_path / "alice").is_dir()


# -- Drive ---------------------------------------------------------------------------
def test_drive_env_needs_auth_state_and_carries_only_the_access_token() -> None:
    with pytest.raises(MissingAuthState, match="enable_auth_state"):
        drive_environment(None, "alice")
    env = drive_environment({"access_token": "ya29.x", "refresh_token": "1//r"}, "alice")
    assert env == {"ZASPERHUB_GDRIVE_ACCESS_TOKEN": "ya29.x"}


def test_drive_spawner_wires_the_refresh_hook() -> None:
    import asyncio

    spawner = local_spawner(storage_url="gdrive://root", auth_state={"access_token": "ya29.y", "refresh_token": "1//r"})
    asyncio.run(spawner.prepare_storage())
    args = spawner.get_args()
    config = next(a for a in args if a.startswith("--config="))
    assert "refresh_from_hub" in Path(config.split("=", 1)[1]).read_text()
    env = spawner.get_env()
    assert env["ZASPERHUB_GDRIVE_ACCESS_TOKEN"] == "ya29.y"
    assert "1//r" not in json.dumps(env)


# -- hub config ----------------------------------------------------------------------
def test_generated_config_is_valid_python_and_culler_and_roles_compose(tmp_path: Path) -> None:
    from traitlets.config import Config

    text = render_config(str(tmp_path / "data"), authenticator="dummy", storage_url="s3://nb1/u/{username}/", idle_timeout=600)
    c = Config()
    exec(compile(text, "generated", "exec"), {"get_config": lambda: c})  # noqa: S102 - our own generated file
    assert c.JupyterHub.spawner_class == "zasperhub.spawners.local.LocalZasperSpawner"
    assert c.ZasperSpawnerMixin.storage_url == "s3://nb1/u/{username}/"
    assert c.JupyterHub.db_url.startswith("sqlite:///") and str(tmp_path) in c.JupyterHub.db_url
    (culler,) = c.JupyterHub.services
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"] and "--timeout=600" in culler["command"]
    enable_idle_culler(c, 0)
    assert c.JupyterHub.services == [] and all(r["name"] != "idle-culler" for r in c.JupyterHub.load_roles)
    enable_drive_token_refresh(c)
    roles = {r["name"]: r["scopes"] for r in c.JupyterHub.load_roles}
    assert "admin:auth_state!user" in roles["server"] and "admin:auth_state!user" in roles["user"]


def run_hub_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zasperhub.platform.cli", "hub", *args], check=False, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_hub_cli_generates_config_once_and_explains_missing_pieces(tmp_path: Path) -> None:
    data = tmp_path / "d"
    first = run_hub_cli(f"--data-dir={data}", "--generate-config", cwd=tmp_path)
    assert first.returncode == 0 and "Wrote" in first.stdout
    config = data / "zasperhub_hub_config.py"
    config.write_text(config.read_text() + "\n# admin edit\n")
    again = run_hub_cli(f"--data-dir={data}", "--generate-config", cwd=tmp_path)
    assert again.returncode == 0 and "left unchanged" in again.stdout
    assert config.read_text().endswith("# admin edit\n")

    missing = run_hub_cli(f"--data-dir={data}", f"--proxy-command={tmp_path / 'nope'}", "--port=9999", cwd=tmp_path)
    assert missing.returncode == 1
    assert "npm install -g configurable-http-proxy" in missing.stderr and "Traceback" not in missing.stderr
    assert "--port only apply to a new config file" in missing.stderr  # the existing file is not rewritten

    bad_db = run_hub_cli(f"--data-dir={data}", "--proxy-command=/bin/true", "--db-url=notaurl", cwd=tmp_path)
    assert bad_db.returncode == 1 and "not a valid SQLAlchemy URL" in bad_db.stderr


# -- Kubernetes ------------------------------------------------------------------------
@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "hub"}}],
        "current-context": "x",
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


async def test_kube_pod_has_probes_limits_locked_down_context_and_secret_refs(kubeconfig: Path) -> None:
    pytest.importorskip("kubespawner")
    from kubernetes_asyncio.client import ApiClient
    from zasperhub.spawners.kube import KubeZasperSpawner

    spawner = KubeZasperSpawner(
        user=HubUser("alice"), hub=HUB, storage_url="s3://notebooks/users/{safe_username}/",
        storage_secret_name="zasperhub-s3", s3_endpoint_url="http://minio:9000", mem_limit="1G", cpu_limit=1.0,
    )
    spawner.api_token = "hub-token-for-server"
    await spawner.prepare_storage()
    pod = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    (container,) = pod["spec"]["containers"]
    assert container["args"][0] == "zasperhub-singleuser" and "--contents=s3://notebooks/users/alice/" in container["args"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/user/alice/api", "port": 8888}
    assert container["livenessProbe"]["httpGet"]["path"] == "/user/alice/api"
    assert container["resources"]["limits"] == {"cpu": 1.0, "memory": 1073741824}
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] and ctx["readOnlyRootFilesystem"] and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]} and ctx["runAsUser"] == 1000
    env = {e["name"]: e for e in container["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[key] and env[key]["valueFrom"]["secretKeyRef"] == {"name": "zasperhub-s3", "key": key}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/home/zasper", "/tmp"}


async def test_kube_per_user_keys_go_into_a_per_user_secret(kubeconfig: Path) -> None:
    pytest.importorskip("kubespawner")
    from zasperhub.spawners.kube import KubeZasperSpawner

    spawner = KubeZasperSpawner(user=HubUser("bob", {"access_token": "ya29.z"}), hub=HUB, storage_url="gdrive://root")
    spawner.api_token = "t"
    spawner.zasper_storage_url = "gdrive://root"
    spawner._zasper_secret_env = await spawner.storage_credentials("gdrive://root")
    refs = spawner.zasper_secret_env()
    assert refs["ZASPERHUB_GDRIVE_ACCESS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "jupyter-bob-storage"
    manifest = spawner.user_secret_manifest()
    assert manifest["metadata"]["name"] == "jupyter-bob-storage" and manifest["kind"] == "Secret"
    assert "ya29.z" not in json.dumps(refs) and "ya29.z" not in json.dumps(manifest)  # base64 in data


# -- start returns once the server listens ------------------------------------------
def test_wait_listening_sees_a_late_listener_a_dead_process_and_a_timeout() -> None:
    import asyncio
    import socket
    import time

    from zasperhub.spawners.local import wait_listening

    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        listener = socket.socket()

        def listen_later() -> None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()

        asyncio.get_running_loop().call_later(0.3, listen_later)
        try:
            assert await wait_listening("", port, 10, lambda: False)  # "" means loopback
        finally:
            listener.close()
        start = time.monotonic()
        assert not await wait_listening("127.0.0.1", port, 10, lambda: True)  # process gone: stop at once
        assert time.monotonic() - start < 1
        assert not await wait_listening("127.0.0.1", port, 0.3, lambda: False)  # nobody listens: bounded

    asyncio.run(main())


def test_ready_wait_is_configurable() -> None:
    from traitlets.config import Config

    config = Config()
    config.SimpleLocalZasperSpawner.ready_wait = 2.5
    assert local_spawner(config=config).ready_wait == 2.5
    assert local_spawner().ready_wait == 30.0
