"""`KubeZasperSpawner`: each user's `zasperhub-singleuser` in a Kubernetes pod.

Built on kubespawner (optional extra: ``pip install 'zasperhub[kubernetes]'``).
On top of the mixin it gives the pod:

- our image and command, with readiness/liveness probes on the server's
  unauthenticated ``{base_url}api`` endpoint;
- a locked-down security context (non-root, read-only root filesystem, no
  privilege escalation, all capabilities dropped, RuntimeDefault seccomp),
  with small writable ``emptyDir`` volumes for ``$HOME`` and ``/tmp``
  (kernel connection files, caches);
- storage credentials as ``secretKeyRef`` references, never literal values
  in the pod spec: per-user keys go into a per-user Secret written before
  the pod starts and deleted when it stops; shared keys are referenced from
  the Secret the Helm chart manages (`storage_secret_name`).
"""

from __future__ import annotations

import base64
from typing import Any

try:
    from kubespawner import KubeSpawner
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("KubeZasperSpawner needs kubespawner: pip install 'zasperhub[kubernetes]'") from e

from traitlets import Bool, Dict, Unicode, default
from zasperhub.platform.version import __version__
from zasperhub.spawners.mixin import S3_KEY_ENV, S3_SECRET_ENV, ZasperSpawnerMixin

#: Where the writable scratch volumes are mounted in the read-only pod.
HOME_DIR = "/home/zasper"
TMP_DIR = "/tmp"


class KubeZasperSpawner(ZasperSpawnerMixin, KubeSpawner):
    """`zasperhub-singleuser` pods with probes, limits and secret references."""

    storage_secret_name = Unicode(
        "",
        config=True,
        help="""Existing Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for
        s3_credentials='shared' (the chart's). Servers reference it; the key is
        never copied into pod specs.""",
    )
    user_secret_name_template = Unicode(
        "{pod_name}-storage", config=True, help="Name of the per-user Secret holding issued credentials."
    )
    read_only_root = Bool(True, config=True, help="Run with a read-only root filesystem (scratch volumes stay writable).")
    probe_settings = Dict(
        config=True, help="Overrides merged into both probes (e.g. {'periodSeconds': 20})."
    )

    @default("image")
    def _default_image(self) -> str:
        return f"ghcr.io/zasperhub/singleuser:{__version__}"

    @default("uid")
    def _default_uid(self) -> int:
        return 1000

    @default("gid")
    def _default_gid(self) -> int:
        return 1000

    @default("fs_gid")
    def _default_fs_gid(self) -> int:
        return 1000

    @default("allow_privilege_escalation")
    def _default_ape(self) -> bool:
        return False

    @default("working_dir")
    def _default_working_dir(self) -> str:
        return HOME_DIR

    # -- pod ----------------------------------------------------------------------
    def probes(self) -> dict[str, Any]:
        """Readiness and liveness probes on `{base_url}api` (answers without auth)."""
        base = self.server.base_url if self.server is not None else f"/user/{self.user.name}/"
        probe: dict[str, Any] = {
            "httpGet": {"path": f"{base.rstrip('/')}/api", "port": self.port},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
        }
        probe.update(self.probe_settings)
        return {
            "readinessProbe": {**probe, "initialDelaySeconds": 1, "failureThreshold": 3},
            "livenessProbe": {**probe, "initialDelaySeconds": 30, "failureThreshold": 6},
        }

    def security_context(self) -> dict[str, Any]:
        return {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": self.read_only_root,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }

    async def get_pod_manifest(self) -> Any:
        pod = await super().get_pod_manifest()
        container = pod.spec.containers[0]
        extra = self.extra_container_config or {}
        probes = self.probes()
        # Admin settings in extra_container_config win over ours.
        if "readinessProbe" not in extra and "readiness_probe" not in extra:
            container.readiness_probe = probes["readinessProbe"]
        if "livenessProbe" not in extra and "liveness_probe" not in extra:
            container.liveness_probe = probes["livenessProbe"]
        context = self.security_context()
        current = container.security_context
        if current is None:
            container.security_context = context
        elif isinstance(current, dict):
            container.security_context = {**context, **current}
        else:
            for key, value in context.items():
                attr = _snake(key)
                if getattr(current, attr, None) is None:
                    setattr(current, attr, value)
        self._add_scratch_volumes(pod)
        return pod

    def _add_scratch_volumes(self, pod: Any) -> None:
        from kubernetes_asyncio.client import (
            V1EmptyDirVolumeSource,
            V1Volume,
            V1VolumeMount,
        )

        existing = {v.name for v in (pod.spec.volumes or [])}
        container = pod.spec.containers[0]
        mounted = {m.mount_path for m in (container.volume_mounts or [])}
        for name, path, size in (("zasper-home", HOME_DIR, "1Gi"), ("zasper-tmp", TMP_DIR, "1Gi")):
            if name in existing or path in mounted:
                continue
            pod.spec.volumes = [*(pod.spec.volumes or []), V1Volume(name=name, empty_dir=V1EmptyDirVolumeSource(size_limit=size))]
            container.volume_mounts = [*(container.volume_mounts or []), V1VolumeMount(name=name, mount_path=path)]

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()
        env.setdefault("HOME", HOME_DIR)
        env.setdefault("JUPYTER_RUNTIME_DIR", f"{TMP_DIR}/jupyter-runtime")
        return env

    # -- secrets ----------------------------------------------------------------------
    @property
    def user_secret_name(self) -> str:
        return self.user_secret_name_template.format(pod_name=self.pod_name)

    def zasper_secret_env(self) -> dict[str, Any]:
        """References instead of values: the pod spec never holds a secret."""
        refs: dict[str, Any] = {}
        secret_env = dict(self._zasper_secret_env)
        if secret_env:
            for key in secret_env:
                refs[key] = {"valueFrom": {"secretKeyRef": {"name": self.user_secret_name, "key": key}}}
        elif self.storage_secret_name and self.zasper_storage_url.startswith("s3://") and self.s3_credentials == "shared":
            for key in (S3_KEY_ENV, S3_SECRET_ENV):
                refs[key] = {"valueFrom": {"secretKeyRef": {"name": self.storage_secret_name, "key": key}}}
        return refs

    async def storage_credentials(self, url: str) -> dict[str, str]:
        if url.startswith("s3://") and self.s3_credentials == "shared" and self.storage_secret_name:
            return {}  # referenced from the chart's Secret instead
        return await super().storage_credentials(url)

    def user_secret_manifest(self) -> dict[str, Any]:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in self._zasper_secret_env.items()}
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.user_secret_name,
                "namespace": self.namespace,
                "labels": {**self._build_common_labels({}), "component": "singleuser-storage"},
            },
            "data": data,
        }

    async def prepare_storage(self) -> None:
        await super().prepare_storage()
        if self._zasper_secret_env:
            await self._write_user_secret()

    async def _write_user_secret(self) -> None:
        from kubernetes_asyncio.client.rest import ApiException

        body = self.user_secret_manifest()
        try:
            await self.api.create_namespaced_secret(self.namespace, body)
        except ApiException as e:
            if e.status != 409:
                raise
            await self.api.replace_namespaced_secret(self.user_secret_name, self.namespace, body)

    async def stop(self, now: bool = False) -> Any:
        result = await super().stop(now=now)
        from kubernetes_asyncio.client.rest import ApiException

        try:
            await self.api.delete_namespaced_secret(self.user_secret_name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                self.log.warning("Could not delete Secret %s: %s", self.user_secret_name, e.reason)
        return result


def _snake(name: str) -> str:
    return "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in name)
