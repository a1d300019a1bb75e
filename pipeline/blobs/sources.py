"""Jobs from objects already in a bucket: POST /v1/jobs {"source": "s3://BUCKET/PREFIX/"}.

The photos never pass through the web tier: it lists the prefix, takes images by their names' extensions
(their content is sniffed when a worker decodes them: a non-image fails its own item), and scans each ZIP in
place with ranged reads (its directory, each member's local header and first bytes; a compressed member is
inflated as it streams by, to count its true size). Items record the object URL; nothing is copied, and
retention never deletes a source's objects.
"""
from __future__ import annotations

from typing import Any, Sequence

from pipeline.blobs.s3 import boto_errors, client, parse_url, translate
from pipeline.blobs.s3_reader import RangedFile
from pipeline.images.archive import LimitExceeded
from pipeline.images.ingest import Part, list_items, member_name
from pipeline.items import ItemSpec
from pipeline.settings import Limits, Settings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")


class SourceRefused(ValueError):
    """A source we do not read (bucket not allowed, no such bucket, nothing to classify): a 400."""


def allowed(settings: Settings, url: str, granted: Sequence[str] = ()) -> tuple[str, str]:
    """(bucket, prefix) of `url` if its bucket is one FB_S3_SOURCE_BUCKETS names and it lies under one of the
    sources `granted` to the API key (`fashion-batch keys grant`); else SourceRefused, which names neither the
    buckets nor the grants (a refusal tells a client nothing about what others may read)."""
    try:
        bucket, prefix = parse_url(url)
    except ValueError as exc:
        raise SourceRefused(f"source must be s3://BUCKET/PREFIX/: {exc}") from None
    if bucket not in settings.s3_source_buckets or not any(_under(bucket, prefix, g) for g in granted):
        raise SourceRefused(f"s3://{bucket}/{prefix} is not an allowed source for this API key (an operator "
                            "grants sources per key: fashion-batch keys grant)")
    return bucket, prefix


def _under(bucket: str, prefix: str, grant: str) -> bool:
    try:
        g_bucket, g_prefix = parse_url(grant)
    except ValueError:
        return False
    return bucket == g_bucket and prefix.startswith(g_prefix)


def _listing(s3: Any, bucket: str, prefix: str, limits: Limits) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(key, size) of the images and of the ZIPs under `prefix`, in key order. Other objects (sidecar files,
    notes) are skipped without counting against any limit; LimitExceeded once the images pass FB_MAX_ITEMS or
    the archives FB_MAX_PARTS, rather than a job silently cut short."""
    images: list[tuple[str, int]] = []
    zips: list[tuple[str, int]] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                key, size = obj["Key"], int(obj["Size"])
                if size <= 0:
                    continue
                if key.lower().endswith(IMAGE_SUFFIXES):
                    images.append((key, size))
                    if len(images) > limits.max_items:
                        raise LimitExceeded(f"too many images under s3://{bucket}/{prefix}: a job holds at most "
                                            f"{limits.max_items:,}; use a narrower prefix")
                elif key.lower().endswith(".zip"):
                    zips.append((key, size))
                    if len(zips) > limits.max_parts:
                        raise LimitExceeded(f"too many archives under s3://{bucket}/{prefix}: a job reads at most "
                                            f"{limits.max_parts:,}; use a narrower prefix")
    except boto_errors() as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in ("NoSuchBucket", "404", "NotFound"):
            raise SourceRefused(f"no bucket {bucket!r} at the object store") from None
        if isinstance(translate(exc, f"s3://{bucket}/{prefix}"), PermissionError):
            raise SourceRefused(f"the object store denies listing s3://{bucket}/{prefix}") from None
        raise translate(exc, f"listing s3://{bucket}/{prefix}") from None
    return images, zips


def source_items(settings: Settings, url: str, classes: Sequence[str] = (), granted: Sequence[str] = ()) \
        -> list[ItemSpec]:
    """Every image under the source, in key order (images, then each ZIP's members), checked like an upload.

    SourceRefused for a refused bucket or a prefix with nothing to classify; LimitExceeded past FB_MAX_ITEMS
    images or FB_MAX_PARTS archives; IngestError / ArchiveError for a ZIP the upload rules refuse;
    SourceUnavailable when the store cannot be reached.
    """
    bucket, prefix = allowed(settings, url, granted)
    s3 = client(settings)
    limits = settings.limits
    images, zips = _listing(s3, bucket, prefix, limits)
    if not images and not zips:
        raise SourceRefused(f"no images or ZIP archives under s3://{bucket}/{prefix}")
    specs = [ItemSpec(member_name(k[len(prefix):]), f"s3://{bucket}/{k}") for k, _ in images]
    parts = [Part(None, member_name(k[len(prefix):]), source=f"s3://{bucket}/{k}",
                  opener=lambda k=k, n=n: RangedFile(s3, bucket, k, n)) for k, n in zips]
    if parts:
        specs += list_items(parts, limits, classes)
    if len(specs) > limits.max_items:
        raise LimitExceeded(f"too many images: a job holds at most {limits.max_items:,}")
    return specs
