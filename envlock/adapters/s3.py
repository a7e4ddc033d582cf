"""S3 objects a run read, by reference: their size, ETag and VersionId (a HEAD request).

boto3 is imported inside the functions. Endpoint, region and credentials come from boto3's
own configuration (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws``…); envlock never
records or prints them.
"""

from __future__ import annotations

from typing import Any

from envlock.errors import EnvlockError

_MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchBucket", "NoSuchVersion")


class S3Error(EnvlockError):
    """An S3 object cannot be looked at (no client, no credentials, refused, unreachable)."""


class S3:
    """HEAD requests to S3 through one boto3 client."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                import boto3
            except ImportError as exc:
                raise S3Error("s3:// inputs need boto3, which is not installed",
                              "pip install boto3") from exc
            self._client = boto3.client("s3")
        return self._client

    def head(self, bucket: str, key: str) -> dict[str, Any] | None:
        """{size, etag, version_id} of the object's current version; None when missing."""
        client = self.client
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            out = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                return None
            raise S3Error(f"s3://{bucket}/{key} cannot be read ({code or 'refused'})",
                          "check the credentials and permissions boto3 uses") from exc
        except BotoCoreError as exc:
            raise S3Error(f"s3://{bucket}/{key} cannot be read: {type(exc).__name__}",
                          "check AWS_ENDPOINT_URL, the region and the credentials") from exc
        return {"size": int(out.get("ContentLength") or 0), "etag": str(out.get("ETag") or ""),
                "version_id": str(out.get("VersionId") or "")}
