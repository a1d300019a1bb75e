"""The `s3://BUCKET/PREFIX` store: uploads go to an S3 API (AWS, SeaweedFS, MinIO), workers read them back
with ranged GETs, so the web service and the workers share no filesystem (README: "Storage and several
hosts").

A job's parts are `PREFIX/jobs/<job id>/part-NNNNN`, and its items record them as object URLs. boto3 is
imported lazily (the `s3` extra); it reads the standard AWS_* credential variables itself. Unreachable
endpoints and server-side errors are SourceUnavailable (the web answers 503, a worker retries its chunk); a
missing object fails only its item.

The package's S3 modules: this one (the client, URLs, and how botocore errors are told apart), `s3_store`
(the web host's side: parts streamed up as they arrive) and `s3_reader` (the workers' side: ranged reads).
"""
from __future__ import annotations

from typing import Any

from pipeline.items import ItemUnreadable, SourceUnavailable
from pipeline.settings import Settings

_MISSING = ("NoSuchKey", "NoSuchBucket", "404", "NotFound")
_DENIED = ("AccessDenied", "403", "Forbidden", "AllAccessDisabled")
# The store answered, about this object: archived (Glacier, Deep Archive), or a range past its end.
_UNREADABLE = {"InvalidObjectState": "archived, not readable until restored",
               "InvalidRange": "shorter than its listing said", "416": "shorter than its listing said"}


def client(settings: Settings) -> Any:
    """A boto3 S3 client for FB_S3_ENDPOINT_URL (or AWS), with short timeouts and a few quick retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise RuntimeError("FB_STORAGE_URL is s3://...: install the s3 extra (pip install 'fashion-batch[s3]')") \
            from None
    config = Config(connect_timeout=3, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"},
                    max_pool_connections=16, s3={"addressing_style": "path"} if settings.s3_endpoint_url else {})
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.s3_region, config=config)


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of s3://BUCKET/PREFIX; the prefix is empty or ends with '/'."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    return bucket, (prefix.rstrip("/") + "/") if prefix.strip("/") else ""


def translate(exc: Exception, what: str) -> Exception:
    """The exception to raise for a botocore error: for one object's own fault, FileNotFoundError (missing),
    PermissionError (access denied) or ItemUnreadable (archived, out of range), which fail its item alone;
    else SourceUnavailable (endpoint unreachable, timeouts, throttling, 5xx), which defers it."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return FileNotFoundError(f"{what}: no such object")
        if code in _DENIED:
            return PermissionError(f"{what}: access denied")
        if code in _UNREADABLE:
            return ItemUnreadable(f"{what}: {_UNREADABLE[code]}")
        return SourceUnavailable(f"the object store refused {what}: {code or exc}")
    return SourceUnavailable(f"the object store cannot be reached ({what}): {exc}")


def boto_errors() -> tuple[type[Exception], ...]:
    """The botocore exception types `translate` takes (imported on first use, as boto3 is)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def outage(exc: Exception, what: str) -> SourceUnavailable:
    """`translate` for the store's own operations (uploads, deletions): any failure there is the store's."""
    error = translate(exc, what)
    return error if isinstance(error, SourceUnavailable) else SourceUnavailable(str(error))
