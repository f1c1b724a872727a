"""SeaweedFS with its embedded IAM API writable, for per-user credentials.

`weed mini` serves the IAM API on the S3 port but read-only by default;
`-s3.iam.readOnly=false` lets the hub create users, policies and keys.
"""

from __future__ import annotations

from typing import Any

from tests.support.seaweed import SeaweedFS


class SeaweedWithIAM(SeaweedFS):
    """`tests.support.seaweed.SeaweedFS` plus writable IAM."""

    def command(self) -> list[str]:
        return [*super().command(), "-s3.iam.readOnly=false"]

    def client_for(self, access_key: str, secret_key: str) -> Any:
        """A boto3 S3 client for an arbitrary key pair (no retries)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
