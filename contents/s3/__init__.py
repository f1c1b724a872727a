"""S3-compatible storage backend (AWS S3, MinIO, SeaweedFS, Cloudflare R2).

Chosen with ``--contents s3://bucket/prefix``; configured through traitlets
(``--S3Backend.endpoint_url=…``, ``--S3Backend.region_name=…``) and the
standard AWS credential chain.  Importing this package does not import
boto3; constructing an `S3Backend` does.
"""

from zasperhub.contents.s3.backend import S3Backend

__all__ = ["S3Backend"]
