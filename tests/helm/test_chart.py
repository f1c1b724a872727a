"""The Helm chart, rendered by Helm's own engine (helm-python-sdk) for several values files.

Every manifest is validated offline against the Kubernetes schemas in strict
mode (kubernetes-validate), and the wiring is checked: the hub config selects
KubeZasperSpawner, secrets are referenced not inlined, pods are non-root with
read-only root filesystems, probes and resources are present, NetworkPolicies
fence users' servers.  The hub config file the chart ships is executed with
the rendered settings, and the user pod KubeZasperSpawner builds from it is
validated too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "zasperhub"
VALUES = Path(__file__).with_name("values")
K8S_VERSION = "1.30.0"
VALUE_FILES = ["default", *sorted(p.stem for p in VALUES.glob("*.yaml"))]
SENSITIVE_ENV = {
    "JPY_COOKIE_SECRET", "CONFIGPROXY_AUTH_TOKEN", "JUPYTERHUB_CRYPT_KEY", "ZASPERHUB_DUMMY_PASSWORD",
    "ZASPERHUB_GOOGLE_CLIENT_SECRET", "PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
}


def load_values(name: str) -> dict[str, Any]:
    return {} if name == "default" else yaml.safe_load((VALUES / f"{name}.yaml").read_text())


def render(values: dict[str, Any], name: str = "zasperhub") -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=name, namespace="notebooks")


def objects(rendered: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Template path → its one object (asserting one object per template file)."""
    found = {}
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert len(docs) <= 1, f"{path} renders {len(docs)} objects; the chart keeps one per file"
        if docs:
            found[path.split("/templates/", 1)[1]] = docs[0]
    return found


@pytest.fixture(scope="module", params=VALUE_FILES)
def rendered(request: pytest.FixtureRequest) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    values = load_values(request.param)
    return values, objects(render(values))


def pod_specs(objs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {path: obj["spec"]["template"]["spec"] for path, obj in objs.items() if obj["kind"] in ("Deployment", "StatefulSet")}


# -- every manifest is valid Kubernetes ----------------------------------------------------
def test_every_manifest_validates_strictly(rendered: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
    _, objs = rendered
    assert objs
    for path, obj in objs.items():
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == "zasperhub", path
        assert path.count("/") == 1, f"{path}: templates live under templates/<component>/"


# -- security review ---------------------------------------------------------------------
def test_pods_are_unprivileged_non_root_read_only(rendered: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
    _, objs = rendered
    for path, spec in pod_specs(objs).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, path
        assert spec["securityContext"]["runAsUser"] != 0, path
        for container in spec["containers"]:
            ctx = container["securityContext"]
            assert ctx["privileged"] is False and ctx["allowPrivilegeEscalation"] is False, path
            assert ctx["readOnlyRootFilesystem"] is True and ctx["capabilities"]["drop"] == ["ALL"], path
            assert container["resources"]["limits"] and container["resources"]["requests"], path
            assert "readinessProbe" in container and "livenessProbe" in container, path
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), path


def test_secrets_are_referenced_never_inlined(rendered: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
    values, objs = rendered
    secret_names = {o["metadata"]["name"] for o in objs.values() if o["kind"] == "Secret"}
    external = {
        values.get("storage", {}).get("s3", {}).get("existingSecret"),
        values.get("auth", {}).get("google", {}).get("existingSecret"),
        values.get("database", {}).get("postgresql", {}).get("existingSecret"),
    } - {None, ""}
    for path, spec in pod_specs(objs).items():
        for container in spec["containers"]:
            for env in container.get("env", []):
                if env["name"] in SENSITIVE_ENV:
                    assert "value" not in env, f"{path}: {env['name']} is inlined"
                    ref = env["valueFrom"]["secretKeyRef"]["name"]
                    assert ref in secret_names | external, f"{path}: {env['name']} refers to unknown Secret {ref}"
            assert not any("secret" in a.lower() and "=" in a for a in container.get("args", []) + container.get("command", []))
    settings = json.loads(objs["hub/configmap.yaml"]["data"]["settings.json"])
    text = json.dumps(settings)
    for secret_value in ("try-me-please", "example-admin-secret-key"):
        assert secret_value not in text
    assert "password" not in settings["database"]["url"]


def test_network_policies_fence_user_servers(rendered: tuple[dict[str, Any], dict[str, dict[str, Any]]]) -> None:
    values, objs = rendered
    policy = objs["singleuser/networkpolicy.yaml"]
    assert policy["spec"]["podSelector"]["matchLabels"]["component"] == "singleuser-server"
    # Only the proxy and the hub may connect to a user's server.
    sources = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in policy["spec"]["ingress"][0]["from"]]
    assert sorted(sources) == ["hub", "proxy"]
    # Outbound: private ranges (databases, other pods, metadata) are excluded.
    blocks = [peer["ipBlock"] for rule in policy["spec"]["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
    world = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(world["except"])
    extra = values.get("singleuser", {}).get("networkPolicy", {}).get("allowedPrivateCidrs", [])
    assert sorted(b["cidr"] for b in blocks if b["cidr"] != "0.0.0.0/0") == sorted(extra)
    hub_policy = objs.get("hub/networkpolicy.yaml")
    if values.get("hub", {}).get("networkPolicy", {}).get("enabled", True):
        assert hub_policy["spec"]["ingress"][0]["ports"] == [{"port": 8081, "protocol": "TCP"}]
        proxy_api = objs["proxy/networkpolicy.yaml"]["spec"]["ingress"][1]
        assert proxy_api["ports"][0]["port"] == 8001 and len(proxy_api["from"]) == 1
    else:
        assert hub_policy is None


# -- wiring: the hub config the chart ships ----------------------------------------------------
def hub_config(objs: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Execute the rendered jupyterhub_config.py with the rendered settings."""
    from traitlets.config import Config

    data = objs["hub/configmap.yaml"]["data"]
    settings = tmp_path / "settings.json"
    settings.write_text(data["settings.json"])
    monkeypatch.setenv("ZASPERHUB_SETTINGS", str(settings))
    for name in ("ZASPERHUB_DUMMY_PASSWORD", "ZASPERHUB_GOOGLE_CLIENT_SECRET"):
        monkeypatch.setenv(name, "from-a-secret")
    c = Config()
    exec(compile(data["jupyterhub_config.py"], "jupyterhub_config.py", "exec"), {"get_config": lambda: c})  # noqa: S102
    return c


@pytest.fixture
def kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "unused"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "notebooks"}}],
        "current-context": "x",
    }))
    monkeypatch.setenv("KUBECONFIG", str(path))


class HubUser:
    def __init__(self, name: str) -> None:
        self.name, self.id, self.url = name, 7, f"/user/{name}/"

    async def get_auth_state(self) -> dict[str, Any]:
        return {"access_token": "ya29.from-auth-state", "refresh_token": "1//kept-in-hub"}


async def test_hub_config_selects_our_spawner_and_builds_a_valid_user_pod(
    rendered: tuple[dict[str, Any], dict[str, dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kubeconfig: None
) -> None:
    pytest.importorskip("kubespawner")
    from types import SimpleNamespace

    from kubernetes_asyncio.client import ApiClient
    from zasperhub.spawners.kube import KubeZasperSpawner

    values, objs = rendered
    c = hub_config(objs, tmp_path, monkeypatch)
    assert c.JupyterHub.spawner_class == "zasperhub.spawners.kube.KubeZasperSpawner"
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.ConfigurableHTTPProxy.api_url == "http://zasperhub-proxy-api:8001"
    culling = values.get("culling", {})
    culler = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"] if "services" in c.JupyterHub else []
    assert bool(culler) == culling.get("enabled", True)
    if culler:
        assert f"--timeout={culling.get('timeout', 3600)}" in culler[0]["command"]
    if values.get("database", {}).get("type") == "postgresql":
        assert c.JupyterHub.db_url == values["database"]["postgresql"]["url"]
    else:
        assert c.JupyterHub.db_url.startswith("sqlite:////srv/jupyterhub/")

    hub = SimpleNamespace(api_url="http://zasperhub-hub:8081/hub/api", base_url="/hub/", public_host="", url="http://zasperhub-hub:8081/hub/")
    spawner = KubeZasperSpawner(config=c, user=HubUser("ann"), hub=hub)
    spawner.api_token = "server-token"
    # What prepare_storage does, minus the calls to the cluster and the store
    # (writing the per-user Secret, issuing an IAM key).
    spawner.zasper_storage_url = spawner.render_storage_url()
    if spawner.s3_credentials == "iam" and spawner.zasper_storage_url.startswith("s3://"):
        spawner._zasper_secret_env = {"AWS_ACCESS_KEY_ID": "AKUSER", "AWS_SECRET_ACCESS_KEY": "user-secret"}
    elif spawner.zasper_storage_url.startswith("gdrive://"):
        spawner._zasper_secret_env = await spawner.storage_credentials(spawner.zasper_storage_url)
        assert spawner.user_secret_manifest()["metadata"]["name"] == "zasperhub-user-ann-storage"
    pod = ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/zasperhub/singleuser:")
    assert container["args"][0] == "zasperhub-singleuser"
    assert pod["metadata"]["labels"]["app.kubernetes.io/instance"] == "zasperhub"  # selected by the NetworkPolicy
    assert pod["metadata"]["labels"]["component"] == "singleuser-server"
    assert container["readinessProbe"]["httpGet"]["path"] == "/user/ann/api"
    assert container["resources"]["limits"]["memory"] and container["resources"]["requests"]["cpu"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in container["env"]}
    storage = values.get("storage", {})
    if storage.get("type", "s3") == "s3":
        bucket = storage.get("s3", {}).get("bucket", "notebooks")
        assert any(a.startswith(f"--contents=s3://{bucket}/") for a in container["args"])
        ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"]
        if storage.get("s3", {}).get("credentials", "iam") == "shared":
            assert ref == storage["s3"].get("existingSecret") or ref == "zasperhub-s3"
        else:
            assert ref == "zasperhub-user-ann-storage"  # the per-user Secret
    else:
        assert "--contents=gdrive://root" in container["args"]
        assert env["ZASPERHUB_GDRIVE_ACCESS_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "zasperhub-user-ann-storage"
        assert "1//kept-in-hub" not in json.dumps(pod)
    for name in SENSITIVE_ENV | {"ZASPERHUB_GDRIVE_ACCESS_TOKEN"}:
        if name in env:
            assert "value" not in env[name], name


# -- values are checked --------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        {"storage": {"s3": {"bukcet": "x"}}},
        {"replicas": 2},
        {"auth": {"type": "github"}},
        {"singleuser": {"resources": {"limits": {"gpu": 1}}}},
        {"database": {"type": "postgresql", "postgresql": {"url": "postgresql://u:inline-password@db/x", "password": "p"}}},
        {"storage": {"type": "gdrive"}},  # Drive needs Google login
    ],
)
def test_schema_rejects_unknown_keys_and_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError) as info:
        render(values)
    assert "schema" in str(info.value).lower() or "values don't meet" in str(info.value).lower(), str(info.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage": {"inCluster": {"enabled": False}}}, "needs credentials"),
        ({"auth": {"type": "google"}}, "clientId is required"),
        ({"database": {"type": "postgresql", "postgresql": {"url": "postgresql://hub@db/hub"}}}, "set password or existingSecret"),
    ],
)
def test_incomplete_values_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


# -- generated secrets ---------------------------------------------------------------------
def test_secrets_are_generated_and_marked_to_be_kept() -> None:
    first = objects(render({}))
    second = objects(render({}))
    secret = first["hub/secret.yaml"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    keys = {"cookie-secret", "crypt-key", "proxy-token", "dummy-password"}
    assert keys <= set(secret["data"])
    for key in keys:
        assert first["hub/secret.yaml"]["data"][key] != second["hub/secret.yaml"]["data"][key]  # really random
    cookie = base64.b64decode(secret["data"]["cookie-secret"]).decode()
    assert len(cookie) == 64 and int(cookie, 16) >= 0  # the hex JupyterHub expects
    s3 = first["singleuser/secret-storage.yaml"]
    identities = json.loads(base64.b64decode(s3["data"]["s3.json"]))
    (admin,) = identities["identities"]
    assert admin["credentials"][0]["accessKey"] == base64.b64decode(s3["data"]["AWS_ACCESS_KEY_ID"]).decode()
    template = (CHART / "templates" / "hub" / "secret.yaml").read_text()
    assert 'lookup "v1" "Secret"' in template


def test_values_given_secrets_are_used_as_given() -> None:
    objs = objects(render(load_values("external-s3-inline-keys")))
    data = objs["singleuser/secret-storage.yaml"]["data"]
    assert base64.b64decode(data["AWS_ACCESS_KEY_ID"]).decode() == "AKIAEXAMPLEADMIN"
    assert "s3.json" not in data  # no in-cluster store
    assert "s3/deployment.yaml" not in objs
    assert "c.JupyterHub.concurrent_spawn_limit = 20" in objs["hub/configmap.yaml"]["data"]["jupyterhub_config.py"]


def test_upgrade_keeps_generated_secrets(tmp_path: Path) -> None:
    """An upgrade renders with `lookup` answered by the cluster (here a local API double)."""
    from tests.helm.kube_api_double import KubeAPIDouble

    install = objects(render({}))
    api = KubeAPIDouble().start()
    try:
        for path in ("hub/secret.yaml", "singleuser/secret-storage.yaml"):
            secret = install[path]
            api.secrets[("notebooks", secret["metadata"]["name"])] = secret
        with helm.Config(kubeconfig_content=api.kubeconfig("notebooks"), namespace="notebooks") as cfg, helm.Chart.load(str(CHART)) as chart:
            upgrade = objects(cfg.render(chart, {"culling": {"timeout": 7200}}, name="zasperhub", namespace="notebooks", is_upgrade=True))
    finally:
        api.stop()
    assert "/api/v1/namespaces/notebooks/secrets/zasperhub-hub" in api.requests
    assert upgrade["hub/secret.yaml"]["data"] == install["hub/secret.yaml"]["data"]
    assert upgrade["singleuser/secret-storage.yaml"]["data"] == install["singleuser/secret-storage.yaml"]["data"]
    # ...while the change in values did take effect.
    assert '"timeout": 7200' in upgrade["hub/configmap.yaml"]["data"]["settings.json"]

