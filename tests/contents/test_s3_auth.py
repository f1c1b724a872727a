"""S3 backend: refused credentials, prefix-scoped identities, configuration and lazy import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from traitlets.config import Application, Config

from tests.contents.s3_fixture import LIMITED, S3_BUCKET, make_s3_backend, seaweedfs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.s3


async def test_wrong_secret_is_refused(make_s3_backend):
    backend = make_s3_backend(secret_access_key="not-the-secret")
    with pytest.raises(PermissionError) as info:
        await backend.list("")
    assert "S3 refused the credentials" in str(info.value) and "SignatureDoesNotMatch" in str(info.value)
    with pytest.raises(PermissionError, match="S3 refused the credentials"):
        await backend.write("x.txt", b"x")


async def test_unknown_key_is_refused(make_s3_backend):
    backend = make_s3_backend(access_key_id="AKUNKNOWN0000000", secret_access_key="whatever")
    with pytest.raises(PermissionError) as info:
        await backend.stat("anything")
    assert "S3 refused the credentials" in str(info.value) and "InvalidAccessKeyId" in str(info.value)


async def test_identity_confined_to_its_prefix(make_s3_backend, seaweedfs):
    own = make_s3_backend(prefix="limited/alice", access_key_id=LIMITED.access_key, secret_access_key=LIMITED.secret_key)
    await own.mkdir("nb")
    await own.write("nb/a.ipynb", b"{}")
    assert [e.name for e in await own.list("nb")] == ["a.ipynb"]
    seaweedfs.client().put_object(Bucket=S3_BUCKET, Key="other/secret.txt", Body=b"s")
    foreign = make_s3_backend(prefix="other", access_key_id=LIMITED.access_key, secret_access_key=LIMITED.secret_key)
    with pytest.raises(PermissionError, match="denied"):
        await foreign.read("secret.txt")
    with pytest.raises(PermissionError, match="denied"):
        await foreign.write("planted.txt", b"x")
    with pytest.raises(PermissionError, match="denied"):
        await foreign.list("")
    assert seaweedfs.client().get_object(Bucket=S3_BUCKET, Key="other/secret.txt")["Body"].read() == b"s"


def test_from_url_reads_traitlets_config(seaweedfs):
    from zasperhub.contents.s3 import S3Backend

    app = Application(config=Config({"S3Backend": {"endpoint_url": seaweedfs.endpoint, "region_name": "us-east-1"}}))
    backend = S3Backend.from_url("s3://my-bucket/some/prefix/", root_dir="/unused", parent=app)
    assert (backend.bucket, backend.prefix, backend.endpoint_url) == ("my-bucket", "some/prefix/", seaweedfs.endpoint)
    assert backend.describe() == f"s3://my-bucket/some/prefix/ at {seaweedfs.endpoint}"
    assert backend.client.meta.config.s3["addressing_style"] == "path"
    root = S3Backend.from_url("s3://bucket-only", root_dir="/unused", parent=app)
    assert root.prefix == ""


@pytest.mark.parametrize(
    "url", ["s3://", "s3://Bad_Bucket/x", "s3://ab/x", "s3://b/../x", "s3://key:secret@bucket/x", "s3://bucket/x?region=1", "gs://b/x"]
)
def test_bad_urls_are_rejected(url):
    from zasperhub.contents.s3 import S3Backend

    with pytest.raises(ValueError):
        S3Backend.from_url(url, root_dir="/unused", parent=Application())


def test_secrets_refused_on_the_command_line():
    from zasperhub.contents.s3 import S3Backend

    app = Application()
    app.parse_command_line(["--S3Backend.secret_access_key=hunter2", "--S3Backend.region_name=eu-west-1"])
    with pytest.raises(ValueError, match="must not be passed on the command line") as info:
        S3Backend.from_url("s3://bucket/x", root_dir="/unused", parent=app)
    assert "hunter2" not in str(info.value)


def test_part_size_below_s3_minimum_is_refused():
    from zasperhub.contents.s3 import S3Backend

    with pytest.raises(Exception, match="at least 5 MiB"):
        S3Backend(bucket="bucket", part_size=1024)


def test_importing_the_backend_does_not_import_boto3():
    code = "import sys, zasperhub.contents.s3; assert 'boto3' not in sys.modules and 'botocore' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_missing_bucket_is_reported_as_unavailable(make_s3_backend):
    from zasperhub.contents.base import StorageUnavailable

    backend = make_s3_backend(bucket="no-such-bucket-here")
    with pytest.raises(StorageUnavailable, match="bucket of s3://no-such-bucket-here/.* does not exist"):
        await backend.list("")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        await backend.write("x.txt", b"x")
