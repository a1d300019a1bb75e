"""Where uploads are kept between the web service and the workers: one small interface, two implementations.

`open_store(settings)` picks one by the scheme of FB_STORAGE_URL, as Dramatiq picks a broker: `file://DIR`
(`local.py`: a folder the web service and every worker mount) or `s3://BUCKET/PREFIX` (`s3.py`: any S3 API,
boto3 imported lazily; the web service and the workers then share nothing but PostgreSQL, Redis and S3).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import BinaryIO, Protocol, Sequence

from pipeline.items import ItemSpec, SourceUnavailable
from pipeline.settings import Limits, Settings

__all__ = ["BlobStore", "ItemReader", "SourceUnavailable", "open_store", "open_reader"]


class ItemReader(Protocol):
    """Reads items' bytes in a worker."""

    def plan(self, job_id: uuid.UUID, specs: Sequence[ItemSpec]) -> None:
        """Say which items come next (a chunk's), so neighbouring archive members can be read together."""

    def read(self, job_id: uuid.UUID, spec: ItemSpec) -> bytes:
        """One image's bytes. OSError or ArchiveError: this item cannot be had (it fails); SourceUnavailable:
        the store cannot be reached now (the chunk is retried)."""

    def close(self) -> None:
        """Release what is kept open."""


class BlobStore(Protocol):
    """A job's uploaded parts: spooled by the web service, read by the workers, removed when the job ends."""

    url: str

    def scratch_dir(self, job_id: uuid.UUID) -> Path:
        """The local folder the web service spools and scans a job's parts in."""

    def spool_root(self) -> Path:
        """The folder whose `incoming/` receives request bodies and whose `jobs/` holds scratch_dir: one
        filesystem, so a spooled part moves into its job by a rename."""

    def item_source(self, job_id: uuid.UUID, name: str) -> str:
        """What the items of a spooled part record as their source: the part's name in the job's folder (local),
        or its object's URL (s3://...), which any worker with the store's credentials can read."""

    def receive(self, job_id: uuid.UUID, index: int, file: BinaryIO) -> BinaryIO:
        """The file object a request's `index`-th file part is spooled through (S3: uploaded as it arrives)."""

    def publish(self, job_id: uuid.UUID, paths: Sequence[Path], streams: Sequence[object] = ()) -> None:
        """Make the spooled parts readable by the workers (SourceUnavailable if the store cannot be reached);
        `streams` are the objects `receive` returned for them."""

    def discard_scratch(self, job_id: uuid.UUID) -> None:
        """Drop the web host's local copy once the parts are published (a no-op where it *is* the store)."""

    def remove_job(self, job_id: uuid.UUID) -> None:
        """Delete every part of a job (it ended, or it was refused after its parts were published)."""

    def reader(self, limits: Limits) -> ItemReader:
        """A reader for worker processes (one per process, created after fork)."""

    def check(self) -> None:
        """Raise SourceUnavailable if the store cannot be used now (GET /healthz)."""


def open_store(settings: Settings) -> BlobStore:
    """The store FB_STORAGE_URL names: file://DIR (the default: FB_STORAGE_DIR) or s3://BUCKET/PREFIX."""
    url = settings.blob_url
    if url.startswith("s3://"):
        from pipeline.blobs.s3_store import S3Store

        return S3Store(settings)
    from pipeline.blobs.local import LocalStore

    return LocalStore(settings)


class _Routing:
    """The store's reader, and an S3 reader for items whose source is an object URL (jobs from a source)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = open_store(settings).reader(settings.limits)
        self._objects: ItemReader | None = self.store if settings.blob_url.startswith("s3://") else None

    def _for(self, spec: ItemSpec) -> ItemReader:
        if not spec.source.startswith("s3://"):
            return self.store
        if self._objects is None:
            from pipeline.blobs.s3 import client
            from pipeline.blobs.s3_reader import S3Reader

            self._objects = S3Reader(client(self.settings), None, self.settings.limits)
        return self._objects

    def plan(self, job_id: uuid.UUID, specs: Sequence[ItemSpec]) -> None:
        if specs:
            self._for(specs[0]).plan(job_id, specs)

    def read(self, job_id: uuid.UUID, spec: ItemSpec) -> bytes:
        return self._for(spec).read(job_id, spec)

    def close(self) -> None:
        self.store.close()
        if self._objects is not None and self._objects is not self.store:
            self._objects.close()


def open_reader(settings: Settings) -> ItemReader:
    """A worker process's reader: the configured store, plus object URLs for jobs made from a source."""
    return _Routing(settings)
