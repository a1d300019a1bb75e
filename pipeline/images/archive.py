"""Reading ZIP archives safely: nothing is extracted to disk and no size in a header is trusted.

`scan_archive` checks a whole archive before a job is accepted (entry count, overlapping entries, nested
archives, and the bytes each compressed member *actually* decompresses to, counted while reading; a stored
member is charged the span it occupies, the most it can yield); `read_member` reads one member again in a
worker, under the same bounds, counting what it reads.
"""
from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from pipeline.images.imaging import SNIFF_BYTES, sniff_format
from pipeline.items import Span
from pipeline.settings import Limits

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # the 30-byte local file header
_BLOCK = 1 << 16
_RATIO_GRACE = 1 << 20  # small members may compress extremely well (blank PNG); judge the ratio past 1 MiB
_NESTED_SUFFIXES = (".zip", ".jar", ".apk", ".7z", ".rar", ".gz", ".tgz", ".bz2", ".xz", ".tar", ".zst")
_NESTED_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"7z\xbc\xaf", b"Rar!", b"\x1f\x8b", b"BZh", b"\xfd7zXZ")


class ArchiveError(ValueError):
    """An archive we refuse as a whole; the message is meant for the person who sent it."""


class LimitExceeded(ArchiveError):
    """An archive refused because it would cost more than the limits allow (size, count, ratio)."""


class CorruptMember(ArchiveError):
    """A member whose data failed (bad CRC, truncated stream) after `inflated` bytes had been decompressed:
    what was inflated still counts against the upload's total."""

    def __init__(self, message: str, inflated: int):
        super().__init__(message)
        self.inflated = inflated


_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError)


@dataclass(frozen=True)
class Member:
    """One file inside an archive: its position in the directory and its name (for display only)."""

    index: int
    name: str
    size: int  # bytes actually decompressed during the scan
    is_image: bool  # its first bytes are those of an image format we accept
    span: Span | None = None  # where its data lies, for a ranged read (`inflate_span`)


def is_zip(head: bytes) -> bool:
    """True if `head` (the first bytes of a file) starts a ZIP archive."""
    return head.startswith((b"PK\x03\x04", b"PK\x05\x06"))


def _ignored(name: str) -> bool:
    # Folders and the metadata macOS adds to archives are not photos anyone sent.
    parts = name.split("/")
    return name.endswith("/") or "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"


def _declared_entries(f: BinaryIO) -> tuple[int, int]:
    """(entry count, central directory size) from the end records, read before zipfile parses anything."""
    f.seek(0, 2)
    size = f.tell()
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(_EOCD)
    if pos < 0:
        raise ArchiveError("not a valid ZIP archive (no end-of-directory record)")
    entries, cd_size = struct.unpack("<HL", tail[pos + 10 : pos + 16])  # total entries, directory size
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # ZIP64: the real values are in the ZIP64 record
        loc = tail.rfind(_EOCD64_LOCATOR, 0, pos)
        if loc < 0:
            raise ArchiveError("not a valid ZIP archive (broken ZIP64 records)")
        (offset,) = struct.unpack("<Q", tail[loc + 8 : loc + 16])
        f.seek(offset)
        rec = f.read(56)
        if len(rec) < 56 or rec[:4] != b"PK\x06\x06":
            raise ArchiveError("not a valid ZIP archive (broken ZIP64 records)")
        entries, cd_size = struct.unpack("<QQ", rec[32:48])
    return entries, cd_size


def _data_offsets(f: BinaryIO, infos: list[zipfile.ZipInfo]) -> dict[int, int]:
    """Where each member's data starts, by `header_offset`; refuse entries whose data overlap.

    Overlapping entries are the non-recursive zip bomb's trick (many entries sharing one compressed stream).
    """
    offsets: dict[int, int] = {}
    end_prev = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end_prev:
            raise ArchiveError("archive refused: entries overlap (a zip bomb construction)")
        f.seek(info.header_offset)
        header = f.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise ArchiveError(f"archive refused: bad local header for {info.filename!r}")
        name_len, extra_len = _LOCAL_HEADER.unpack(header)[-2:]
        offsets[info.header_offset] = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        end_prev = offsets[info.header_offset] + info.compress_size
    return offsets


def _consumed(stream: zipfile.ZipExtFile, info: zipfile.ZipInfo) -> int:
    """Compressed bytes read so far (CPython's reader keeps the remainder), so a bomb shows early."""
    left = getattr(stream, "_compress_left", None)
    return info.compress_size - left if isinstance(left, int) else info.compress_size


def _charge(info: zipfile.ZipInfo, n: int, limits: Limits, cap: int) -> None:
    """Raise LimitExceeded once `n` bytes of `info` pass the per-entry or the upload's total limit."""
    if n > limits.max_entry_bytes:
        raise LimitExceeded(
            f"archive refused: {info.filename!r} expands beyond the {limits.max_entry_bytes:,}-byte limit per file"
        )
    if n > cap:
        raise LimitExceeded(f"archive refused: it expands beyond the {limits.max_total_bytes:,}-byte limit per upload")


def _peek_stored(f: BinaryIO, info: zipfile.ZipInfo, start: int, limits: Limits, budget: int) -> tuple[bytes, int]:
    """The first bytes of an uncompressed member (its data starts at `start`), and the most it can yield.

    A stored member cannot yield more than the `compress_size` bytes it occupies in the file (zipfile stops
    there, and `_data_offsets` has made the members' spans disjoint), so it is charged that much without
    reading it; a corrupt one fails its own item when a worker reads it through zipfile.
    """
    _charge(info, info.compress_size, limits, min(limits.max_entry_bytes, budget))
    f.seek(start)
    return f.read(min(SNIFF_BYTES, info.compress_size)), info.compress_size


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: int, keep: bool) -> tuple[bytes, int]:
    """Decompress one member, counting real output bytes against the per-entry, total and ratio limits.

    Returns (the data if `keep`, else only its first bytes; the number of bytes it decompressed to).
    """
    cap = min(limits.max_entry_bytes, budget)
    out = bytearray()
    n = 0
    try:
        with zf.open(info) as stream:
            while True:
                block = stream.read(_BLOCK)
                if not block:
                    break
                n += len(block)
                if keep or len(out) < SNIFF_BYTES:
                    out += block if keep else block[: SNIFF_BYTES - len(out)]
                _charge(info, n, limits, cap)
                if n > _RATIO_GRACE and n > limits.max_ratio * max(_consumed(stream, info), 1):
                    raise LimitExceeded(
                        f"archive refused: {info.filename!r} has a compression ratio above {limits.max_ratio}:1"
                    )
    except _CORRUPT as exc:
        # Raised at the end of a member that inflated in full and then failed its CRC, too: charge what it cost.
        raise CorruptMember(f"corrupt archive member: {exc}", n) from None
    return bytes(out), n


def scan_archive(f: BinaryIO, limits: Limits, budget: int | None = None) -> list[Member]:
    """Validate a whole archive and list its files, or raise ArchiveError.

    `budget` is how many decompressed bytes the rest of the upload may still use (default: the total limit).
    A member whose data is corrupt is still listed: it becomes a failed item, not a refused archive.
    """
    budget = limits.max_total_bytes if budget is None else budget
    entries, cd_size = _declared_entries(f)
    # Refuse before zipfile builds one object per entry: the count and the directory size bound its work.
    if entries > limits.max_zip_entries or cd_size > limits.max_zip_entries * 400:
        raise LimitExceeded(f"archive refused: it has more than {limits.max_zip_entries:,} entries")
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise ArchiveError(f"not a valid ZIP archive: {exc}") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_zip_entries:
            raise LimitExceeded(f"archive refused: it has more than {limits.max_zip_entries:,} entries")
        starts = _data_offsets(f, infos)
        members: list[Member] = []
        for index, info in enumerate(infos):
            if info.is_dir() or _ignored(info.filename):
                continue
            if info.filename.lower().endswith(_NESTED_SUFFIXES):
                raise ArchiveError(f"archive refused: nested archive {info.filename!r} (send images only)")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"archive refused: {info.filename!r} is encrypted")
            span = Span(starts[info.header_offset], info.compress_size, info.compress_type, info.file_size,
                        info.CRC)
            try:
                if info.compress_type == zipfile.ZIP_STORED:
                    head, size = _peek_stored(f, info, starts[info.header_offset], limits, budget)
                else:
                    head, size = _inflate(zf, info, limits, budget, keep=False)
            except CorruptMember as exc:
                budget -= exc.inflated  # its item will fail, but the bytes it inflated were spent
                members.append(Member(index, info.filename, exc.inflated, False, span))
                continue
            except ArchiveError:
                raise
            except _CORRUPT:
                members.append(Member(index, info.filename, 0, False, span))  # corrupt member: its item will fail
                continue
            if head.startswith(_NESTED_MAGIC):
                raise ArchiveError(f"archive refused: nested archive {info.filename!r} (send images only)")
            budget -= size
            members.append(Member(index, info.filename, size, sniff_format(head) is not None, span))
        return members


def read_member(zf: zipfile.ZipFile, index: int, limits: Limits) -> bytes:
    """Read the member at directory position `index`, bounded as in the scan; raise ArchiveError if not."""
    infos = zf.infolist()
    if not 0 <= index < len(infos):
        raise ArchiveError(f"archive has no member number {index}")
    try:
        return _inflate(zf, infos[index], limits, limits.max_entry_bytes, keep=True)[0]
    except ArchiveError:
        raise
    except _CORRUPT as exc:
        raise ArchiveError(f"corrupt archive member: {exc}") from None


def inflate_span(raw: bytes, span: Span, limits: Limits) -> bytes:
    """A member's bytes from its raw data as read from `span` (no archive opened), bounded as in the scan.

    The output is counted against the per-file limit and the ratio while it is produced, and checked against
    the size and CRC-32 the directory declares; raise ArchiveError when it is corrupt or too large.
    """
    if len(raw) != span.length:
        raise ArchiveError(f"corrupt archive member: {len(raw):,} of {span.length:,} bytes could be read")
    if span.method == zipfile.ZIP_STORED:
        out = raw
        if len(out) > limits.max_entry_bytes:
            raise LimitExceeded(f"archive member expands beyond the {limits.max_entry_bytes:,}-byte limit per file")
    else:
        try:
            decompressor = zipfile._get_decompressor(span.method)  # deflate, bzip2, lzma: as zipfile reads them
        except NotImplementedError as exc:
            raise ArchiveError(f"corrupt archive member: {exc}") from None
        parts, n = [], 0
        try:
            for start in range(0, len(raw), _BLOCK // 4):
                block = decompressor.decompress(raw[start:start + _BLOCK // 4])
                n += len(block)
                parts.append(block)
                if n > limits.max_entry_bytes:
                    raise LimitExceeded(
                        f"archive member expands beyond the {limits.max_entry_bytes:,}-byte limit per file")
                if n > _RATIO_GRACE and n > limits.max_ratio * min(start + _BLOCK // 4, len(raw)):
                    raise LimitExceeded(f"archive member has a compression ratio above {limits.max_ratio}:1")
            if hasattr(decompressor, "flush"):
                parts.append(decompressor.flush())
        except ArchiveError:
            raise
        except (zlib.error, EOFError, OSError, ValueError) as exc:
            raise ArchiveError(f"corrupt archive member: {exc}") from None
        out = b"".join(parts)
    if len(out) != span.size or zlib.crc32(out) != span.crc32:
        raise ArchiveError("corrupt archive member: its bytes do not match the archive's directory (size or CRC)")
    return out
