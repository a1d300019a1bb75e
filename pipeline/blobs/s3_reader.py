"""The workers' side of the `s3://` store: items read from objects by ranged GETs (a member's data only,
neighbouring members together), ZIPs scanned in place, plain images fetched a few ahead.
"""
from __future__ import annotations

import io
import uuid
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Sequence

from pipeline.blobs.s3 import boto_errors, translate
from pipeline.images.archive import ArchiveError, inflate_span, read_member
from pipeline.items import ItemSpec, ItemUnreadable
from pipeline.settings import Limits

if TYPE_CHECKING:
    from pipeline.blobs.s3_store import S3Store

_GAP = 256 * 1024  # neighbouring members closer than this are read in one GET (the gap is read and dropped)
_GROUP = 16 * 1024**2  # ... up to this many bytes a GET, which bounds a worker's buffer
_BLOCK = 1024**2  # RangedFile's read-ahead, for scanning a ZIP in place
_AHEAD = 8  # plain images (a job from a bucket of loose photos) fetched ahead of the one being prepared


def get_range(s3: Any, bucket: str, key: str, start: int, length: int) -> bytes:
    """Bytes [start, start + length) of an object, in one ranged GET."""
    if length <= 0:
        return b""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{start + length - 1}")["Body"]
        with body:
            return body.read()
    except boto_errors() as exc:
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
            piece = self._block(at // _BLOCK)[at % _BLOCK: at % _BLOCK + end - at]
            if not piece:  # the object is shorter than its listing said: no read will ever reach `end`
                raise ItemUnreadable(f"s3://{self.bucket}/{self.key}: shorter than its listing said "
                                     f"({self.size:,} bytes)")
            out += piece
        buffer[:len(out)] = out
        self.pos += len(out)
        return len(out)


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
        except boto_errors() as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    def _head(self, bucket: str, key: str) -> int:
        try:
            return int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except boto_errors() as exc:
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
