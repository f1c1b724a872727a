"""The repository layout never shadows the standard library."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_platform_is_stdlib_from_repo_root() -> None:
    """`import platform` at the repository root must be the stdlib module."""
    assert not (ROOT / "platform" / "__init__.py").exists()
    out = subprocess.run(
        [sys.executable, "-c", "import platform, sys; print(platform.__file__); print(platform.system())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert not out[0].startswith(str(ROOT)), out[0]
    assert out[1]


def test_zasperhub_platform_importable() -> None:
    import zasperhub.platform.app  # noqa: F401
    import zasperhub.platform.web.base  # noqa: F401
