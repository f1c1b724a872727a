"""Backend selection by URL scheme, lazy imports and clear configuration errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from zasperhub.contents.local import LocalBackend
from zasperhub.contents.registry import ContentsConfigError, open_contents, scheme_of


def test_local_by_default_and_file_urls(tmp_path: Path) -> None:
    other = tmp_path / "other dir"
    other.mkdir()
    assert isinstance(open_contents("", root_dir=str(tmp_path)).backend, LocalBackend)
    assert open_contents("", root_dir=str(tmp_path)).backend.root == str(tmp_path.resolve())
    assert open_contents("file://", root_dir=str(tmp_path)).backend.root == str(tmp_path.resolve())
    assert open_contents(f"file://{other}".replace(" ", "%20"), root_dir=str(tmp_path)).backend.root == str(other.resolve())
    assert open_contents(str(other), root_dir=str(tmp_path)).backend.root == str(other.resolve())
    assert scheme_of("S3://bucket") == "s3" and scheme_of("C:/x") == "file"


def test_unknown_scheme_and_missing_dir_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ContentsConfigError, match=r"No contents backend for ftp://"):
        open_contents("ftp://host/x", root_dir=str(tmp_path))
    with pytest.raises(ContentsConfigError, match="does not exist"):
        open_contents(f"file://{tmp_path}/missing", root_dir=str(tmp_path))


def test_traitlets_configuration(tmp_path: Path) -> None:
    from traitlets.config import Application, Config

    app = Application(config=Config({"ContentsManager": {"allow_hidden": True, "hash_algorithm": "md5"}}))
    cm = open_contents("", root_dir=str(tmp_path), parent=app)
    assert cm.allow_hidden is True and cm.hash_algorithm == "md5"
    with pytest.raises(Exception, match="Unknown hash algorithm"):
        cm.hash_algorithm = "nope"


def test_sdks_are_not_imported_for_local_storage(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from zasperhub.contents.registry import open_contents\n"
        f"cm = open_contents('', root_dir={str(tmp_path)!r})\n"
        "heavy = [m for m in ('boto3', 'botocore', 'googleapiclient', 'nbformat', 'jsonschema') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bundled_backends_are_found_by_scheme() -> None:
    from zasperhub.contents.registry import backend_class

    assert backend_class("s3").__name__ == "S3Backend"
    assert backend_class("gdrive").__name__ == "DriveBackend"
    assert backend_class("file") is LocalBackend and backend_class("local") is LocalBackend


@pytest.mark.parametrize(("url", "blocked", "extra"), [("s3://bucket/prefix", "boto3", "s3"), ("gdrive://folder", "googleapiclient", "gdrive")])
def test_missing_sdk_names_the_extra(tmp_path: Path, url: str, blocked: str, extra: str) -> None:
    # sys.modules[name] = None makes `import name` fail as if not installed.
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None\n"
        "from zasperhub.contents.registry import ContentsConfigError, open_contents\n"
        "try:\n"
        f"    open_contents({url!r}, root_dir={str(tmp_path)!r})\n"
        "except ContentsConfigError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert f"pip install 'zasperhub[{extra}]'" in out.stdout, out.stdout + out.stderr
