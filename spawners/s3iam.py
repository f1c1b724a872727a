"""Per-user S3 credentials through the standard IAM API.

For each user the hub keeps one IAM user whose only policy allows object
reads/writes/deletes under that user's prefix and listing of that prefix.
Every start of the user's server issues a fresh access key and deletes the
older ones, so a key leaked from a stopped server stops working at the next
start and nothing secret needs to live in the hub database.

Works with any store that implements the IAM user/policy/access-key calls:
AWS IAM, and SeaweedFS's embedded IAM API (`weed s3 -iam.readOnly=false`,
served on the S3 port).  MinIO manages users through its own admin API
instead, so it is not supported by this issuer.

The calls are blocking (boto3); `issue()` runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

#: The inline policy's name on each IAM user.
POLICY_NAME = "zasperhub-notebooks"


@dataclasses.dataclass(frozen=True)
class S3Credentials:
    """An access key pair for one user."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never print the secret
        return f"S3Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def prefix_policy(bucket: str, prefix: str) -> dict[str, Any]:
    """An IAM policy confining a principal to `bucket`/`prefix`.

    `prefix` ends with "/" (or is empty for the whole bucket).  Listing is
    allowed only with an `s3:prefix` inside the user's prefix, so other
    users' key names stay hidden too.
    """
    objects = f"arn:aws:s3:::{bucket}/{prefix}*"
    statements: list[dict[str, Any]] = [
        {
            "Effect": "Allow",
            "Action": [
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                # Multipart uploads (large files) are covered by PutObject;
                # SeaweedFS rejects s3:ListMultipartUploadParts as unknown.
                "s3:AbortMultipartUpload",
            ],
            "Resource": [objects],
        }
    ]
    listing: dict[str, Any] = {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]}
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}*"]}}
    statements.append(listing)
    return {"Version": "2012-10-17", "Statement": statements}


class IAMCredentialIssuer:
    """Creates (once) and rotates (each start) a user's prefix-scoped key.

    `admin_key_id`/`admin_secret` must be allowed to manage IAM users.  An
    empty `endpoint_url` means AWS's IAM service.
    """

    def __init__(self, endpoint_url: str, admin_key_id: str, admin_secret: str, region: str = "us-east-1", timeout: float = 20.0) -> None:
        self.endpoint_url = endpoint_url or None
        self._admin = (admin_key_id, admin_secret)
        self.region = region
        self.timeout = timeout
        self._client: Any = None

    def _iam(self) -> Any:
        if self._client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError as e:  # pragma: no cover - depends on the install
                raise RuntimeError("per-user S3 credentials need boto3: pip install 'zasperhub[s3]'") from e
            self._client = boto3.client(
                "iam",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self._admin[0] or None,
                aws_secret_access_key=self._admin[1] or None,
                region_name=self.region,
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=self.timeout, read_timeout=self.timeout),
            )
        return self._client

    def issue_sync(self, iam_user: str, bucket: str, prefix: str) -> S3Credentials:
        """Ensure `iam_user` exists with the prefix policy; return a fresh key (blocking)."""
        from botocore.exceptions import ClientError

        iam = self._iam()
        try:
            iam.create_user(UserName=iam_user, Tags=[{"Key": "managed-by", "Value": "zasperhub"}])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
        # Re-put the policy every time: a changed storage template then
        # takes effect at the user's next start.
        iam.put_user_policy(UserName=iam_user, PolicyName=POLICY_NAME, PolicyDocument=json.dumps(prefix_policy(bucket, prefix)))
        old = [k["AccessKeyId"] for k in iam.list_access_keys(UserName=iam_user).get("AccessKeyMetadata", [])]
        for key_id in old:
            iam.delete_access_key(UserName=iam_user, AccessKeyId=key_id)
        key = iam.create_access_key(UserName=iam_user)["AccessKey"]
        return S3Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def revoke_sync(self, iam_user: str) -> None:
        """Delete every access key of `iam_user` (blocking); the user and policy stay."""
        from botocore.exceptions import ClientError

        iam = self._iam()
        try:
            keys = iam.list_access_keys(UserName=iam_user).get("AccessKeyMetadata", [])
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "NoSuchEntity":
                return
            raise
        for k in keys:
            iam.delete_access_key(UserName=iam_user, AccessKeyId=k["AccessKeyId"])

    def ensure_bucket_sync(self, s3_endpoint_url: str, bucket: str) -> bool:
        """Create `bucket` with the admin key unless it exists (blocking); True if created."""
        import boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError

        s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint_url or None,
            aws_access_key_id=self._admin[0] or None,
            aws_secret_access_key=self._admin[1] or None,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=self.timeout, read_timeout=self.timeout),
        )
        try:
            s3.head_bucket(Bucket=bucket)
            return False
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        try:
            s3.create_bucket(Bucket=bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
            return False
        return True

    async def issue(self, iam_user: str, bucket: str, prefix: str) -> S3Credentials:
        """`issue_sync` off the hub's event loop."""
        return await asyncio.to_thread(self.issue_sync, iam_user, bucket, prefix)

    async def revoke(self, iam_user: str) -> None:
        """`revoke_sync` off the hub's event loop."""
        await asyncio.to_thread(self.revoke_sync, iam_user)
