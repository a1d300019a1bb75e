"""Safe archive reading: listing, limits counted while decompressing, bombs and tricks refused."""
from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest

from pipeline.images.archive import (
    ArchiveError,
    LimitExceeded,
    read_member,
    scan_archive,
)
from pipeline.settings import Limits
from tests.helpers import garment_png

LIMITS = Limits(max_zip_entries=100, max_entry_bytes=2_000_000, max_total_bytes=5_000_000, max_ratio=50)


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> io.BytesIO:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    buf.seek(0)
    return buf


def test_lists_files_in_folders_and_skips_folder_entries_and_mac_metadata():
    # Given an archive with images in folders, a folder entry and macOS metadata
    png = garment_png()
    buf = zip_bytes({"a.png": png, "shirts/": b"", "shirts/b.png": png, "__MACOSX/._b.png": b"x",
                     "notes.txt": b"hello"})
    # When it is scanned
    members = scan_archive(buf, LIMITS)
    # Then every file is listed in directory order, images recognised, metadata and folders skipped
    assert [(m.name, m.is_image) for m in members] == [("a.png", True), ("shirts/b.png", True), ("notes.txt", False)]
    assert members[0].size == len(png)


def test_read_member_returns_the_exact_bytes_by_directory_position():
    png = garment_png()
    buf = zip_bytes({"x.png": b"first", "y.png": png})
    members = scan_archive(buf, LIMITS)
    with zipfile.ZipFile(buf) as zf:
        assert read_member(zf, members[1].index, LIMITS) == png
        with pytest.raises(ArchiveError):
            read_member(zf, 99, LIMITS)


def test_high_ratio_bomb_is_refused_while_decompressing():
    # Given 100 MB of zeros compressed to about 100 kB
    buf = zip_bytes({"bomb.png": b"\0" * 100_000_000})
    # When scanned, Then the ratio (or size) limit stops it long before 100 MB are produced
    with pytest.raises(LimitExceeded, match="ratio|limit"):
        scan_archive(buf, Limits(max_entry_bytes=10**9, max_total_bytes=10**10, max_ratio=50))


def test_per_entry_and_total_limits_count_real_bytes():
    random_ish = random.Random(0).randbytes(1_000_000)  # incompressible, so only the size limits apply
    with pytest.raises(LimitExceeded, match="per file"):
        scan_archive(zip_bytes({"big.png": random_ish * 3}), LIMITS)
    members = {f"{i}.png": random_ish for i in range(6)}
    with pytest.raises(LimitExceeded, match="per upload"):
        scan_archive(zip_bytes(members), LIMITS)


def test_declared_size_lie_cannot_make_the_reader_produce_more_than_the_limit():
    # Given a member whose central directory claims 10 bytes but whose data inflates to 3 MB
    buf = zip_bytes({"lie.png": b"\x89PNG" + b"A" * 3_000_000})
    data = bytearray(buf.getvalue())
    cd = data.rfind(b"PK\x01\x02")
    struct.pack_into("<L", data, cd + 24, 10)  # uncompressed size in the central directory
    lh = data.find(b"PK\x03\x04")
    struct.pack_into("<L", data, lh + 22, 10)  # and in the local header
    # When scanned, Then the member is read no further than its declared size and reported corrupt (CRC)
    members = scan_archive(io.BytesIO(bytes(data)), LIMITS)
    assert members[0].size == 0 and not members[0].is_image


def test_stored_members_are_charged_their_stored_length_under_the_same_limits():
    # Given uncompressed (stored) members, as zipfile and many tools write JPEGs
    png = garment_png()
    members = scan_archive(zip_bytes({"a.png": png, "b.txt": b"hello"}, zipfile.ZIP_STORED), LIMITS)
    # Then they are listed and sniffed like compressed ones, with their real length
    assert [(m.name, m.size, m.is_image) for m in members] == [("a.png", len(png), True), ("b.txt", 5, False)]
    # And the per-file and per-upload limits apply to them too
    blob = b"\x89PNG" + bytes(1_999_000)  # just under the 2,000,000-byte limit per file
    with pytest.raises(LimitExceeded, match="per file"):
        scan_archive(zip_bytes({"big.png": blob + bytes(2000)}, zipfile.ZIP_STORED), LIMITS)
    with pytest.raises(LimitExceeded, match="per upload"):
        scan_archive(zip_bytes({f"{i}.png": blob for i in range(3)}, zipfile.ZIP_STORED), LIMITS)


def test_stored_member_with_a_corrupt_body_is_listed_then_fails_when_read():
    # Given a stored 100 kB PNG whose tail was damaged after zipping (its CRC no longer matches)
    png = garment_png() + bytes(100_000)  # decoders ignore what follows the image
    data = bytearray(zip_bytes({"a.png": png, "b.png": png}, zipfile.ZIP_STORED).getvalue())
    data[data.find(png) + len(png) - 10] ^= 0xFF
    buf = io.BytesIO(bytes(data))
    # When the archive is scanned, Then both are listed (the scan reads only a stored member's first bytes)
    members = scan_archive(buf, LIMITS)
    assert [m.is_image for m in members] == [True, True]
    # And reading the damaged one fails on its own with a clear error, the other reads back intact
    with zipfile.ZipFile(buf) as zf:
        with pytest.raises(ArchiveError, match="corrupt archive member"):
            read_member(zf, members[0].index, LIMITS)
        assert read_member(zf, members[1].index, LIMITS) == png


def test_too_many_entries_is_refused_before_parsing_them():
    buf = zip_bytes({f"{i}.png": b"" for i in range(150)})
    with pytest.raises(LimitExceeded, match="more than 100 entries"):
        scan_archive(buf, LIMITS)


def test_nested_archives_are_refused_by_name_and_by_content():
    inner = zip_bytes({"a.png": garment_png()}).getvalue()
    with pytest.raises(ArchiveError, match="nested"):
        scan_archive(zip_bytes({"inner.zip": inner}), LIMITS)
    with pytest.raises(ArchiveError, match="nested"):
        scan_archive(zip_bytes({"innocent.png": inner}), LIMITS)


def overlapping_zip(n: int = 20) -> bytes:
    """David Fifield's construction, simplified: many directory entries sharing one compressed stream."""
    payload = b"\0" * 1_000_000
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(payload) + comp.flush()
    crc = zlib.crc32(payload)
    name = b"k.png"
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(stream), len(payload), len(name), 0)
    body = local + name + stream
    central = b""
    for i in range(n):
        nm = f"{i}.png".encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(stream), len(payload),
                               len(nm), 0, 0, 0, 0, 0, 0) + nm
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(body), 0)
    return body + central + end


def test_overlapping_entries_are_refused():
    with pytest.raises(ArchiveError, match="overlap"):
        scan_archive(io.BytesIO(overlapping_zip()), Limits())


def test_not_a_zip_and_encrypted_members():
    with pytest.raises(ArchiveError, match="not a valid ZIP"):
        scan_archive(io.BytesIO(b"PK\x03\x04 this is not really a zip"), LIMITS)
    buf = zip_bytes({"a.png": garment_png()})
    data = bytearray(buf.getvalue())
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 8] |= 0x1  # mark the member encrypted
    with pytest.raises(ArchiveError, match="encrypted"):
        scan_archive(io.BytesIO(bytes(data)), LIMITS)


def _break_crcs(data: bytes) -> bytes:
    """The archive with every member's CRC-32 in the central directory changed (its data stays intact)."""
    out, at = bytearray(data), 0
    while (at := out.find(b"PK\x01\x02", at)) >= 0:
        crc = struct.unpack_from("<L", out, at + 16)[0]
        struct.pack_into("<L", out, at + 16, crc ^ 0xFFFFFFFF)
        at += 4
    return bytes(out)


def test_members_that_inflate_then_fail_their_crc_are_charged_what_they_inflated():
    # Given an archive of ten 600 kB members (incompressible) whose CRCs are all wrong: 6 MB inflated in all
    rng = random.Random(7)
    members = {f"{i}.png": rng.randbytes(600_000) for i in range(10)}
    broken = io.BytesIO(_break_crcs(zip_bytes(members).getvalue()))
    # When it is scanned under a 5 MB total / Then it is refused: each member's inflated bytes were spent
    with pytest.raises(LimitExceeded, match="limit per upload"):
        scan_archive(broken, LIMITS)
    # And a smaller one is listed, its corrupt members counted at what they cost
    few = io.BytesIO(_break_crcs(zip_bytes(dict(list(members.items())[:3])).getvalue()))
    assert all(m.size > 500_000 and not m.is_image for m in scan_archive(few, LIMITS))
