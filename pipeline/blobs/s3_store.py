"""The web host's side of the `s3://` store: a job's parts spooled on local disk, scanned there, and uploaded
while the request arrives (multipart, 8 MiB parts), so no part is ever whole in memory.
"""
from __future__ import annotations

import os
import shutil
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from pipeline.blobs.s3 import boto_errors, client, outage, parse_url, translate
from pipeline.blobs.s3_reader import S3Reader
from pipeline.items import SourceUnavailable
from pipeline.settings import Limits, Settings

_PART_BYTES = 8 * 1024**2  # multipart upload: parts of 8 MiB, so no part is ever whole in memory
# Parts in memory at once in this process, whatever the number of requests and files: each part being sent
# holds one slot (so at most 4 x 8 MiB), on one pool of as many threads shared by every upload.
UPLOAD_SLOTS = 4
_slots = threading.BoundedSemaphore(UPLOAD_SLOTS)
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _uploader() -> ThreadPoolExecutor:
    """The process's upload threads (made on first use, so after a pre-forking server has forked)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=UPLOAD_SLOTS, thread_name_prefix="s3-upload")
        return _pool


class StreamingPart:
    """A part being received: written to its spool file as the request arrives and, each 8 MiB as it is
    complete, sent as one part of a multipart upload (read back from disk), so the upload to S3 runs alongside
    the request instead of after it; at most UPLOAD_SLOTS parts (32 MiB) are in memory at a time in the whole
    process, however many files and requests arrive together."""

    def __init__(self, s3: Any, bucket: str, key: str, file: BinaryIO):
        self.s3, self.bucket, self.key, self._file = s3, bucket, key, file
        self.name = file.name
        self._fd = os.open(file.name, os.O_RDONLY)  # stays valid when the file is moved into the job's folder
        self._upload_id: str | None = None
        self._parts: list[Future] = []
        self._sent = self._size = 0
        self._lock = threading.Lock()
        self.done = False

    @property
    def part_name(self) -> str:
        """The name of the part in its job (the last component of its key)."""
        return self.key.rsplit("/", 1)[-1]

    def write(self, data: bytes) -> int:
        n = self._file.write(data)
        self._size += n
        while self._size - self._sent >= _PART_BYTES:
            self._file.flush()
            self._send(self._sent, _PART_BYTES)
        return n

    def _send(self, offset: int, length: int) -> None:
        number = len(self._parts) + 1
        self._parts.append(_uploader().submit(self._upload_part, number, offset, length))
        self._sent = offset + length

    def _upload_part(self, number: int, offset: int, length: int) -> dict:
        with self._lock:  # the first part creates the multipart upload
            if self._upload_id is None:
                self._upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        with _slots:
            body = os.pread(self._fd, length, offset)
            etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                       PartNumber=number, Body=body)["ETag"]
        return {"PartNumber": number, "ETag": etag}

    def finish(self) -> None:
        """Send what is left and complete the upload (a part under 8 MiB goes in one PUT); SourceUnavailable
        if the store could not be reached."""
        self._file.flush()
        try:
            if not self._parts:
                with _slots:
                    self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=os.pread(self._fd, self._size, 0))
            else:
                if self._size > self._sent:
                    self._send(self._sent, self._size - self._sent)
                parts = [f.result() for f in self._parts]
                self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                  MultipartUpload={"Parts": parts})
            self.done = True
        except boto_errors() as exc:
            raise outage(exc, f"upload to s3://{self.bucket}/{self.key}") from None

    def abort(self) -> None:
        """Give up an unfinished upload (the request was refused or failed) and release the file."""
        for part in self._parts:
            if not part.cancel():
                try:
                    part.result()  # a part being sent reads the file: let it end before the file is closed
                except Exception:  # noqa: BLE001, S110 - the upload is given up anyway
                    pass
        if not self.done and self._upload_id is not None:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except boto_errors():
                pass  # the lifecycle rule's AbortIncompleteMultipartUpload covers it (README: Storage)
        os.close(self._fd)
        self._fd = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)  # seek, read, tell, flush, close: the spool file's


class S3Store:
    """Parts spooled on the web host's own disk (FB_STORAGE_DIR, a scratch folder), scanned there, uploaded."""

    def __init__(self, settings: Settings):
        self.url = settings.blob_url
        self.settings = settings
        self.bucket, self.prefix = parse_url(self.url)
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            self._s3 = client(self.settings)
        return self._s3

    def key(self, job_id: uuid.UUID, name: str) -> str:
        """The object key of a job's part."""
        return f"{self.prefix}jobs/{uuid.UUID(str(job_id))}/{Path(name).name}"

    def item_source(self, job_id: uuid.UUID, name: str) -> str:
        """The part's object URL: a worker needs no FB_STORAGE_URL of its own to read it."""
        return f"s3://{self.bucket}/{self.key(job_id, name)}"

    def scratch_dir(self, job_id: uuid.UUID) -> Path:
        """A folder on the web host, removed once the parts are uploaded."""
        return self.settings.storage_dir / "jobs" / str(uuid.UUID(str(job_id)))

    def spool_root(self) -> Path:
        """The web host's scratch folder (FB_STORAGE_DIR)."""
        return self.settings.storage_dir

    def receive(self, job_id: uuid.UUID, index: int, file: BinaryIO) -> StreamingPart:
        """The file a request's `index`-th file part is written to: spooled, and uploaded as it arrives."""
        return StreamingPart(self.s3, self.bucket, self.key(job_id, f"part-{index:05d}"), file)

    def publish(self, job_id: uuid.UUID, paths: Sequence[Path], streams: Sequence[object] = ()) -> None:
        """Complete the parts' uploads: those received as StreamingParts have sent all but their last 8 MiB
        already; any other is uploaded now from disk, in 8 MiB parts, several parts at a time."""
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(multipart_threshold=_PART_BYTES, multipart_chunksize=_PART_BYTES, max_concurrency=4)

        def upload(path: Path) -> None:
            try:
                self.s3.upload_file(str(path), self.bucket, self.key(job_id, path.name), Config=config)
            except Exception as exc:  # noqa: BLE001 - boto3's transfer layer wraps errors in its own types
                cause = exc.__cause__ if exc.__cause__ is not None else exc
                error = cause if isinstance(cause, boto_errors()) else exc
                raise outage(error, f"upload to s3://{self.bucket}") from None

        streaming = {s.part_name: s for s in streams if isinstance(s, StreamingPart)}
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda p: streaming[p.name].finish() if p.name in streaming else upload(p), paths))

    def discard_scratch(self, job_id: uuid.UUID) -> None:
        """Delete the web host's copy of the parts."""
        shutil.rmtree(self.scratch_dir(job_id), ignore_errors=True)

    def remove_job(self, job_id: uuid.UUID) -> None:
        """Delete the job's objects (and any scratch copy). Retention's only deletion: see README, Storage."""
        self.discard_scratch(job_id)
        prefix = self.key(job_id, "x")[:-1]
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})
        except boto_errors() as exc:
            raise outage(exc, f"deleting s3://{self.bucket}/{prefix}") from None

    def check(self) -> None:
        """HEAD the bucket: SourceUnavailable if the endpoint does not answer, refuses us, or has no such bucket."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except boto_errors() as exc:
            error = translate(exc, f"s3://{self.bucket}")
            raise error if isinstance(error, SourceUnavailable) else SourceUnavailable(f"no bucket {self.bucket!r}") \
                from None

    def reader(self, limits: Limits) -> S3Reader:
        """A reader that fetches members by ranged GETs, neighbours together."""
        return S3Reader(self.s3, self, limits)
