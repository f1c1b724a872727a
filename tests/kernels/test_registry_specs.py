"""Kernelspec lookup in the server: same specs as jupyter_client, without importing IPython/ipykernel."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from zasperhub.platform.kernels.registry import KernelRegistry

    async def main():
        registry = KernelRegistry(root_dir=sys.argv[1])
        kid = await registry.start_kernel("python3")
        ready = await registry.get(kid).wait_ready(120)
        spec = registry.kernel_spec_manager.get_kernel_spec("python3")
        loaded = sorted(m for m in ("IPython", "ipykernel") if m in sys.modules)
        await registry.shutdown_all()
        print(json.dumps({"ready": ready, "loaded": loaded, "argv": spec.argv, "dirs": registry.kernel_spec_manager.kernel_dirs}))

    asyncio.run(main())
    """
)


def test_python3_kernel_starts_without_importing_ipython_into_the_server(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], check=False, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["ready"] is True
    assert result["loaded"] == []  # ≈ 13 MB of modules the server never runs
    # The same kernelspec and search path as stock jupyter_client (which imports IPython for them).
    from jupyter_client.kernelspec import KernelSpecManager

    stock = KernelSpecManager()
    assert result["dirs"] == stock.kernel_dirs
    assert result["argv"] == stock.get_kernel_spec("python3").argv
