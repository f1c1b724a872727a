# Zasper Hub on Kubernetes: the hub's configuration, rendered by the Helm chart.
#
# Settings come from settings.json (a ConfigMap, no secrets); secrets come from
# environment variables filled from Secrets (see the hub Deployment).
import json
import os

from zasperhub.spawners.hubconfig import (
    SERVER_SCOPES,
    enable_drive_token_refresh,
    enable_idle_culler,
    k8s_cpu_cores,
    k8s_memory_bytes,
)

c = get_config()  # noqa: F821 - provided by JupyterHub

with open(os.environ.get("ZASPERHUB_SETTINGS", "/etc/zasperhub/settings.json")) as f:
    settings = json.load(f)

# -- hub and proxy -------------------------------------------------------------
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = settings["hubConnectUrl"]
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = settings["proxyApiUrl"]
c.JupyterHub.cleanup_servers = False  # a hub restart must not stop users' servers
c.JupyterHub.cookie_secret_file = "/srv/jupyterhub/jupyterhub_cookie_secret"  # unused: JPY_COOKIE_SECRET is set
c.JupyterHub.load_roles = [{"name": "server", "scopes": list(SERVER_SCOPES)}]

# -- database --------------------------------------------------------------------
if settings["database"]["type"] == "postgresql":
    # The password comes from $PGPASSWORD (libpq), never from this URL.
    c.JupyterHub.db_url = settings["database"]["url"]
else:
    c.JupyterHub.db_url = "sqlite:////srv/jupyterhub/jupyterhub.sqlite"

# -- authentication ----------------------------------------------------------------
auth = settings["auth"]
c.Authenticator.admin_users = set(auth["admins"])
if auth["allowedUsers"]:
    c.Authenticator.allowed_users = set(auth["allowedUsers"])
if auth["type"] == "google":
    c.JupyterHub.authenticator_class = "google"
    c.GoogleOAuthenticator.client_id = auth["google"]["clientId"]
    c.GoogleOAuthenticator.client_secret = os.environ["ZASPERHUB_GOOGLE_CLIENT_SECRET"]
    c.GoogleOAuthenticator.oauth_callback_url = auth["google"]["callbackUrl"]
    if auth["google"]["allowedDomains"]:
        c.GoogleOAuthenticator.hosted_domain = auth["google"]["allowedDomains"]
        c.GoogleOAuthenticator.allow_all = True  # everyone in those domains
    c.GoogleOAuthenticator.enable_auth_state = True
    c.GoogleOAuthenticator.scope = ["openid", "email", "https://www.googleapis.com/auth/drive.file"]
    # A refresh token, and the hub re-checks tokens at most a minute apart.
    c.GoogleOAuthenticator.extra_authorize_params = {"access_type": "offline", "prompt": "consent"}
    c.GoogleOAuthenticator.auth_refresh_age = 60
else:
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ["ZASPERHUB_DUMMY_PASSWORD"]
    if not auth["allowedUsers"]:
        c.Authenticator.allow_all = True

# -- users' servers ----------------------------------------------------------------
c.JupyterHub.spawner_class = "zasperhub.spawners.kube.KubeZasperSpawner"
c.KubeZasperSpawner.image = settings["singleuserImage"]
c.KubeZasperSpawner.image_pull_policy = settings["pullPolicy"]
c.KubeZasperSpawner.image_pull_secrets = settings["pullSecrets"]
c.KubeZasperSpawner.namespace = settings["namespace"]
c.KubeZasperSpawner.pod_name_template = settings["fullname"] + "-user-{user_server}"
c.KubeZasperSpawner.extra_labels = {"app.kubernetes.io/instance": settings["release"]}
c.KubeZasperSpawner.start_timeout = settings["singleuser"]["startTimeout"]
resources = settings["singleuser"]["resources"]
c.KubeZasperSpawner.cpu_limit = k8s_cpu_cores(resources.get("limits", {}).get("cpu"))
c.KubeZasperSpawner.mem_limit = k8s_memory_bytes(resources.get("limits", {}).get("memory"))
c.KubeZasperSpawner.cpu_guarantee = k8s_cpu_cores(resources.get("requests", {}).get("cpu"))
c.KubeZasperSpawner.mem_guarantee = k8s_memory_bytes(resources.get("requests", {}).get("memory"))

storage = settings["storage"]
if storage["type"] == "s3":
    c.KubeZasperSpawner.storage_url = f"s3://{storage['bucket']}/{storage['prefixTemplate']}"
    c.KubeZasperSpawner.s3_endpoint_url = storage["endpoint"]
    c.KubeZasperSpawner.s3_region = storage["region"]
    c.KubeZasperSpawner.s3_credentials = storage["credentials"]
    # Shared keys are referenced from this Secret; per-user keys get their own.
    c.KubeZasperSpawner.storage_secret_name = storage["secretName"]
    c.KubeZasperSpawner.s3_create_bucket = True
else:
    c.KubeZasperSpawner.storage_url = "gdrive://root"
    enable_drive_token_refresh(c)

# -- idle servers ------------------------------------------------------------------
culling = settings["culling"]
if culling["enabled"]:
    enable_idle_culler(c, culling["timeout"], culling["every"], culling["maxAge"])
