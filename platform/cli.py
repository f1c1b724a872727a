"""Console scripts: `zasperhub` and `zasperhub-singleuser`."""

from __future__ import annotations

import sys

from zasperhub.platform.app import run


def main(argv: list[str] | None = None) -> None:
    """`zasperhub`: serve the current directory with token auth."""
    run(sys.argv[1:] if argv is None else argv)


def singleuser_main(argv: list[str] | None = None) -> None:
    """`zasperhub-singleuser`: the same server as launched by JupyterHub."""
    run(sys.argv[1:] if argv is None else argv, hub_mode=True, open_browser=False)
if __name__ == "__main__":
    main()
