"""JupyterHub spawners that launch `zasperhub-singleuser`, and the `zasperhub hub` launcher.

Importing this package is cheap: JupyterHub, kubespawner and boto3 are imported
by the modules that need them, so the single-user server never pays for them.

- `zasperhub.spawners.mixin.ZasperSpawnerMixin` — turns any JupyterHub spawner
  into a Zasper spawner (command, per-user storage, credentials, state).
- `zasperhub.spawners.local` — `LocalZasperSpawner`, `SimpleLocalZasperSpawner`.
- `zasperhub.spawners.kube` — `KubeZasperSpawner` (extra: `zasperhub[kubernetes]`).
- `zasperhub.spawners.hubapp` — `zasperhub hub`.
"""
