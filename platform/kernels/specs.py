"""Kernelspec lookup that does not import the kernel into the server.

jupyter_client special-cases the `python3` kernelspec: looking it up
imports `ipykernel.kernelspec`, and with it ipykernel and IPython (≈ 13 MB
of modules — pygments, parso, prompt_toolkit … — that the server never
runs), just to recognise ipykernel's own built-in spec directory.  When the
spec directory holds a `kernel.json` (every installed kernelspec, including
`python -m ipykernel install`'s) it is read directly; only the built-in
fallback without one goes through jupyter_client's path.  Likewise the
kernelspec search path's `~/.ipython/kernels` entry is computed without
importing IPython.
"""

from __future__ import annotations

import os

from jupyter_client.kernelspec import (
    NATIVE_KERNEL_NAME,
    KernelSpec,
    KernelSpecManager,
    NoSuchKernel,
)
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.paths import jupyter_path
from traitlets import default


def ipython_dir() -> str:
    """IPython's profile directory as `IPython.paths.get_ipython_dir` finds it (env, else ~/.ipython)."""
    configured = os.environ.get("IPYTHONDIR")
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".ipython")


class LeanKernelSpecManager(KernelSpecManager):
    """A `KernelSpecManager` that reads installed kernelspecs without importing their kernel."""

    @default("kernel_dirs")
    def _lean_kernel_dirs(self) -> list[str]:
        return [*jupyter_path("kernels"), os.path.join(ipython_dir(), "kernels")]

    def _get_kernel_spec_by_name(self, kernel_name: str, resource_dir: str) -> KernelSpec:
        if kernel_name != NATIVE_KERNEL_NAME or not os.path.isfile(os.path.join(resource_dir, "kernel.json")):
            return super()._get_kernel_spec_by_name(kernel_name, resource_dir)
        kspec = self.kernel_spec_class.from_resource_dir(resource_dir)
        if not KernelProvisionerFactory.instance(parent=self.parent).is_provisioner_available(kspec):
            raise NoSuchKernel(kernel_name)
        return kspec
