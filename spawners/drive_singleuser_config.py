"""Config file for `zasperhub-singleuser` in Drive mode under JupyterHub.

The spawner passes `--config=<this file>`: it makes the Drive backend refresh
the user's Google token through the hub instead of holding a refresh token.
"""

from zasperhub.spawners.authstate import refresh_from_hub

c = get_config()  # noqa: F821 - provided by the traitlets config loader
c.DriveBackend.credentials_refresher = refresh_from_hub
