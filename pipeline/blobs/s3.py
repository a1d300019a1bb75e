"""The `s3://BUCKET/PREFIX` store: uploads go to an S3 API (AWS, SeaweedFS, MinIO), workers read them back
with ranged GETs, so the web service and the workers share no filesystem (README: "Storage and several
hosts").

A job's parts are `PREFIX/jobs/<job id>/part-NNNNN`, and its items record them as object URLs. boto3 is
imported lazily (the `s3` extra); it reads the standard AWS_* credential variables itself. Unreachable endpoints and server-side errors are SourceUnavailable
(the web answers 503, a worker retries its chunk); a missing object fails only its item.
"""
from __future__ import annotations

import io
import os
import shutil
import threading
import uuid
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Sequence

from pipeline.images.archive import ArchiveError, inflate_span, read_member
from pipeline.items import ItemSpec, SourceUnavailable
from pipeline.settings import Limits, Settings

_PART_BYTES = 8 * 1024**2  # multipart upload: parts of 8 MiB, so no part is ever whole in memory
_GAP = 256 * 1024  # neighbouring members closer than this are read in one GET (the gap is read and dropped)
_GROUP = 16 * 1024**2  # ... up to this many bytes a GET, which bounds a worker's buffer
_BLOCK = 1024**2  # RangedFile's read-ahead, for scanning a ZIP in place
_AHEAD = 8  # plain images (a job from a bucket of loose photos) fetched ahead of the one being prepared
_MISSING = ("NoSuchKey", "404", "NotFound")


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
    """The exception to raise for a botocore error: FileNotFoundError for a missing object, else
    SourceUnavailable (endpoint unreachable, timeouts, throttling, 5xx, refused credentials)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return FileNotFoundError(f"{what}: no such object")
        return SourceUnavailable(f"the object store refused {what}: {code or exc}")
    return SourceUnavailable(f"the object store cannot be reached ({what}): {exc}")


def _errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def get_range(s3: Any, bucket: str, key: str, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of an object, in one ranged GET."""
    if length <= 0:
        return b""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")["Body"]
        with body:
            return body.read()
    except _errors() as exc:
        raise translate(exc, f"s3://{bucket}/{key}") from None


class RangedFile(io.RawIOBase):
    """A read-only, seekable file over one object, read by ranged GETs of `_BLOCK` bytes (the last few kept),
    so that zipfile and the archive scan can read a ZIP in a bucket without downloading it whole."""

    def __init__(self, s3: Any, bucket: str, key: str, size: int, keep: int = 8):
        self.s3, self.bucket, self.key, self.size, self.keep = s3, bucket, key, size, keep
        self.pos = 0
        self._blocks: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def _block(self, n: int) -> bytes:
        if n not in self._blocks:
            if len(self._blocks) >= self.keep:
                self._blocks.pop(next(iter(self._blocks)))
            self._blocks[n] = get_range(self.s3, self.bucket, self.key, n * _BLOCK, min(_BLOCK, self.size - n * _BLOCK))
        return self._blocks[n]

    def readinto(self, buffer) -> int:
        end = min(self.size, self.pos + len(buffer))
        out = bytearray()
        while self.pos + len(out) < end:
            at = self.pos + len(out)
            block = self._block(at // _BLOCK)
            out += block[at % _BLOCK: at % _BLOCK + end - at]
        buffer[:len(out)] = out
        self.pos += len(out)
        return len(out)


class StreamingPart:
    """A part being received: written to its spool file as the request arrives and, each 8 MiB as it is
    complete, sent as one part of a multipart upload (read back from disk), so the upload to S3 runs alongside
    the request instead of after it; at most four parts (32 MiB) are in memory at a time."""

    def __init__(self, s3: Any, bucket: str, key: str, file: BinaryIO):
        self.s3, self.bucket, self.key, self._file = s3, bucket, key, file
        self.name = file.name
        self._fd = os.open(file.name, os.O_RDONLY)  # stays valid when the file is moved into the job's folder
        self._pool: ThreadPoolExecutor | None = None
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
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=4)
        number = len(self._parts) + 1
        self._parts.append(self._pool.submit(self._upload_part, number, offset, length))
        self._sent = offset + length

    def _upload_part(self, number: int, offset: int, length: int) -> dict:
        with self._lock:  # the first part creates the multipart upload
            if self._upload_id is None:
                self._upload_id = self.s3.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"]
        body = os.pread(self._fd, length, offset)
        etag = self.s3.upload_part(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number,
                                   Body=body)["ETag"]
        return {"PartNumber": number, "ETag": etag}

    def finish(self) -> None:
        """Send what is left and complete the upload (a part under 8 MiB goes in one PUT); SourceUnavailable
        if the store could not be reached."""
        self._file.flush()
        try:
            if not self._parts:
                self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=os.pread(self._fd, self._size, 0))
            else:
                if self._size > self._sent:
                    self._send(self._sent, self._size - self._sent)
                parts = [f.result() for f in self._parts]
                self.s3.complete_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id,
                                                  MultipartUpload={"Parts": parts})
            self.done = True
        except _errors() as exc:
            raise translate(exc, f"upload to s3://{self.bucket}/{self.key}") from None

    def abort(self) -> None:
        """Give up an unfinished upload (the request was refused or failed) and release the file."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if not self.done and self._upload_id is not None:
            try:
                self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
            except _errors():
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
                raise translate(cause if isinstance(cause, _errors()) else exc, f"upload to s3://{self.bucket}") \
                    from None

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
        except _errors() as exc:
            raise translate(exc, f"deleting s3://{self.bucket}/{prefix}") from None

    def check(self) -> None:
        """HEAD the bucket: SourceUnavailable if the endpoint does not answer, refuses us, or has no such bucket."""
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except _errors() as exc:
            error = translate(exc, f"s3://{self.bucket}")
            raise error if isinstance(error, SourceUnavailable) else SourceUnavailable(f"no bucket {self.bucket!r}") \
                from None

    def reader(self, limits: Limits) -> "S3Reader":
        """A reader that fetches members by ranged GETs, neighbours together."""
        return S3Reader(self.s3, self, limits)


class S3Reader:
    """Reads items from objects: a member with a recorded span by a ranged GET of its data only, a chunk's
    neighbouring members in one GET of at most 16 MiB; a plain image whole (bounded by the per-file limit),
    the chunk's next few fetched by threads while the current one is prepared."""

    def __init__(self, s3: Any, store: S3Store | None, limits: Limits):
        self.s3, self.store, self.limits = s3, store, limits
        self._groups: dict[tuple[str, int], int] = {}  # (source, member) -> its run in _runs
        self._runs: list[tuple[int, int]] = []  # (start, end) of each run of neighbouring members
        self._loaded: tuple[int, bytes] | None = None
        self._plain: list[tuple[str, str, str]] = []  # the chunk's plain images: (source, bucket, key), in order
        self._position: dict[str, int] = {}
        self._fetching: dict[str, Future] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _where(self, job_id: uuid.UUID, source: str) -> tuple[str, str]:
        if source.startswith("s3://"):
            bucket, _, key = source[5:].partition("/")
            return bucket, key
        if self.store is None:
            raise FileNotFoundError(f"{source}: not an object URL")
        return self.store.bucket, self.store.key(job_id, source)

    def plan(self, job_id: uuid.UUID, specs: Sequence[ItemSpec]) -> None:
        """Group the chunk's members into runs of neighbours in the same object, each read by one GET later."""
        self._groups.clear()
        self._loaded = None
        self._drop_fetches()
        self._plain = [(sp.source, *self._where(job_id, sp.source)) for sp in specs if sp.member is None]
        self._position = {source: i for i, (source, _, _) in enumerate(self._plain)}
        runs: list[list] = []  # [source, start, end]
        for spec in specs:
            s = spec.span
            if s is None:
                continue
            run = runs[-1] if runs else None
            if (run is not None and run[0] == spec.source and run[2] <= s.offset <= run[2] + _GAP
                    and s.offset + s.length - run[1] <= _GROUP):
                run[2] = s.offset + s.length
            else:
                runs.append([spec.source, s.offset, s.offset + s.length])
            self._groups[(spec.source, spec.member)] = len(runs) - 1
        self._runs = [(start, end) for _, start, end in runs]

    def read(self, job_id: uuid.UUID, spec: ItemSpec) -> bytes:
        """One image's bytes (FileNotFoundError or ArchiveError fail the item; SourceUnavailable retries it)."""
        bucket, key = self._where(job_id, spec.source)
        if spec.member is None:
            position = self._position.pop(spec.source, None)
            if position is None:
                return self._whole(bucket, key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4)
            for source, b, k in self._plain[position:position + _AHEAD + 1]:
                if source not in self._fetching and (source == spec.source or source in self._position):
                    self._fetching[source] = self._pool.submit(self._whole, b, k)
            return self._fetching.pop(spec.source).result()
        span = spec.span
        if span is None:  # recorded before spans were: open the archive in place
            with zipfile.ZipFile(RangedFile(self.s3, bucket, key, self._head(bucket, key))) as zf:
                return read_member(zf, spec.member, self.limits)
        if span.length > self.limits.max_entry_bytes:
            raise ArchiveError(f"archive member too large ({span.length:,} bytes)")
        number = self._groups.get((spec.source, spec.member))
        if number is None:
            raw = get_range(self.s3, bucket, key, span.offset, span.length)
        else:
            start, end = self._runs[number]
            if self._loaded is None or self._loaded[0] != number:
                self._loaded = None  # drop the previous group before fetching the next
                self._loaded = (number, get_range(self.s3, bucket, key, start, end - start))
            data = self._loaded[1]
            raw = data[span.offset - start: span.offset - start + span.length]
        return inflate_span(raw, span, self.limits)

    def _whole(self, bucket: str, key: str) -> bytes:
        """A plain image, in one GET; one over the per-file limit is refused before its body is read."""
        try:
            obj = self.s3.get_object(Bucket=bucket, Key=key)
            with obj["Body"] as body:
                if int(obj["ContentLength"]) > self.limits.max_entry_bytes:
                    raise ArchiveError(f"file too large ({int(obj['ContentLength']):,} bytes)")
                return body.read()
        except _errors() as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    def _head(self, bucket: str, key: str) -> int:
        try:
            return int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except _errors() as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    def _drop_fetches(self) -> None:
        for future in self._fetching.values():
            future.cancel()
        self._fetching.clear()

    def close(self) -> None:
        """Drop the buffered group and the images fetched ahead; stop the fetching threads."""
        self._groups.clear()
        self._loaded = None
        self._drop_fetches()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
