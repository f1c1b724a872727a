"""Version numbers: ours, and the Jupyter Server API level we implement."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zasperhub")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

#: Clients (JupyterLab, VS Code) read `/api`'s version to decide what the
#: server supports; we implement Jupyter Server 2.x's REST and WebSocket API.
JUPYTER_SERVER_API_VERSION = "2.14.0"
