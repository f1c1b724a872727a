"""The one compiled module: `zasperhub.platform.kernels._native` (the kernel -> client hot path).

Everything else is in pyproject.toml.  The extension is optional: where no C
compiler is available the build says so and the server runs the same
protocol in pure Python (platform/kernels/native.py chooses).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "zasperhub.platform.kernels._native",
            ["platform/kernels/_native.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wno-missing-braces"],
            optional=True,
        )
    ]
)
