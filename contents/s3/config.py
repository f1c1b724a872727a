"""Configuration of the S3 backend and the boto3 client built from it.

Why boto3 and not the minio SDK for the data path (measured by
benchmarks/s3_client_choice.py against SeaweedFS; results and the full
comparison in benchmarks/results/s3_client_choice.md): PUT/GET of 1 MB take
the same wall time with either (the server dominates; client CPU differs by
1-2 ms per MB), and listing 1,000 keys costs boto3 about 22 ms of CPU against
minio's 41 ms once botocore's dateutil timestamp parsing is replaced (see
`fast_timestamp`; stock boto3 needs ~75 ms).  minio imports lighter (~17 MB
vs ~40 MB RSS over bare Python), but it cannot send conditional PUTs
(`If-Match` / `If-None-Match` become user metadata) and keeps its multipart
primitives private; boto3 has both, plus `upload_part_copy` and the full AWS
credential chain (env, profiles, SSO, assume-role, IRSA, IMDS).  The import
cost is paid only when an s3:// store is configured.

Secrets: the credential chain (``AWS_ACCESS_KEY_ID``…, profiles, instance
roles) is the normal way.  Explicit keys may be put in a config file, but are
refused on the command line, where every local user can read them in `ps`.
"""

from __future__ import annotations

import datetime
import email.utils
from typing import Any

from traitlets import Bool, Enum, Float, Int, Unicode, validate
from traitlets.config import LoggingConfigurable

MIB = 1 << 20
#: S3's minimum size of every multipart part but the last.
MIN_PART_SIZE = 5 * MIB
#: Largest object a single CopyObject may copy.
MAX_SINGLE_COPY = 5 * 1024 * MIB
SECRET_TRAITS = ("access_key_id", "secret_access_key", "session_token")


def fast_timestamp(value: Any) -> datetime.datetime:
    """Parse an S3 timestamp: ISO 8601 (listings) or RFC 1123 (headers), tz-aware."""
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                parsed = None
        if parsed is not None:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


class S3Settings(LoggingConfigurable):
    """Traits shared by `S3Backend`; configure them as ``S3Backend.<name>``."""

    endpoint_url = Unicode(
        "", config=True, help="S3 endpoint, e.g. http://127.0.0.1:8333 for MinIO/SeaweedFS (empty: AWS, or $AWS_ENDPOINT_URL_S3)."
    )
    region_name = Unicode("", config=True, help="Region (empty: $AWS_REGION / $AWS_DEFAULT_REGION / profile; 'auto' for R2).")
    addressing_style = Enum(
        ["auto", "path", "virtual"], "auto", config=True,
        help="Bucket addressing; 'auto' means path-style for a custom endpoint_url and virtual-hosted for AWS.",
    )
    profile = Unicode("", config=True, help="Named AWS profile from ~/.aws/config to take credentials from.")
    access_key_id = Unicode("", config=True, help="Access key (config file only; prefer the AWS credential chain).")
    secret_access_key = Unicode("", config=True, help="Secret key (config file only; never on the command line).")
    session_token = Unicode("", config=True, help="Session token for temporary credentials (config file only).")

    connect_timeout = Float(3.0, config=True, help="Seconds to wait for a connection, so an outage is reported quickly.")
    read_timeout = Float(20.0, config=True, help="Seconds to wait for a response once connected.")
    max_attempts = Int(2, config=True, help="Total attempts per request, including the first (botocore 'standard' retries).")
    max_workers = Int(8, config=True, help="Threads (and pooled connections) for S3 calls; they never run on the event loop.")
    part_size = Int(8 * MIB, config=True, help="Multipart part size for chunked uploads and large copies (>= 5 MiB).")
    multipart_copy_threshold = Int(
        MAX_SINGLE_COPY, config=True, help="Objects larger than this are copied part by part (UploadPartCopy)."
    )
    conditional_writes = Bool(
        True, config=True,
        help="Use If-Match / If-None-Match on PUT for conflict checks (AWS, MinIO, SeaweedFS, R2 support it); "
        "off: compare versions with a HEAD first (racy, for stores without support).",
    )

    @validate("part_size")
    def _validate_part_size(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value < MIN_PART_SIZE:
            raise ValueError(f"S3Backend.part_size must be at least 5 MiB ({MIN_PART_SIZE} bytes), got {value}")
        return value

    @validate("max_workers", "max_attempts")
    def _validate_positive(self, proposal: Any) -> int:
        if int(proposal["value"]) < 1:
            raise ValueError(f"S3Backend.{proposal['trait'].name} must be at least 1")
        return int(proposal["value"])

    def refuse_cli_secrets(self) -> None:
        """Fail if a secret was given as a command-line option (readable by anyone via `ps`)."""
        cli = getattr(self.parent, "cli_config", None) or {}
        section = cli.get(type(self).__name__, {}) if hasattr(cli, "get") else {}
        given = [name for name in SECRET_TRAITS if name in section]
        if given:
            raise ValueError(
                f"S3 secrets must not be passed on the command line ({', '.join('--S3Backend.' + g for g in given)}): "
                "use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an AWS profile, or a config file"
            )

    def make_client(self) -> Any:
        """A thread-safe boto3 S3 client built from these settings (imports boto3)."""
        import boto3
        from botocore.config import Config

        import botocore.session

        core = botocore.session.get_session()
        # botocore parses every timestamp of a listing with dateutil, which is most
        # of the client-side cost of listing a big folder; ISO 8601 needs no dateutil.
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=fast_timestamp)
        session = boto3.session.Session(botocore_session=core, profile_name=self.profile or None)
        style = self.addressing_style
        if style == "auto" and self.endpoint_url:
            # MinIO/SeaweedFS/R2 endpoints are usually IPs or single hosts without wildcard DNS.
            style = "path"
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            max_pool_connections=self.max_workers,
            s3={"addressing_style": style},
            # botocore >= 1.36 adds CRC checksums to every request by default; several
            # S3-compatible stores reject or ignore them, and they cost CPU per byte.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        kwargs: dict[str, Any] = {"config": config}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.region_name:
            kwargs["region_name"] = self.region_name
        if self.access_key_id or self.secret_access_key:
            kwargs["aws_access_key_id"] = self.access_key_id or None
            kwargs["aws_secret_access_key"] = self.secret_access_key or None
            kwargs["aws_session_token"] = self.session_token or None
        return session.client("s3", **kwargs)
