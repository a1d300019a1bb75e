"""Reading a member from its recorded span alone (what a worker does with a ranged GET): pure, no store."""
from __future__ import annotations

import io
import zipfile

import pytest

from pipeline.images.archive import (
    ArchiveError,
    LimitExceeded,
    inflate_span,
    scan_archive,
)
from pipeline.items import Span
from pipeline.settings import Limits
from tests.helpers import garment_png


def _scanned(members: dict[str, bytes], compression: int, limits: Limits = Limits()) -> tuple[bytes, list]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = buf.getvalue()
    return data, scan_archive(io.BytesIO(data), limits)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_a_span_yields_the_member_for_every_method(compression):
    # Given a ZIP scanned as an upload is
    members = {"a.png": garment_png(), "b/c.bmp": garment_png("trouser", fmt="BMP")}
    data, scanned = _scanned(members, compression)
    # When each member is read from the bytes of its span only
    got = [inflate_span(data[m.span.offset:m.span.offset + m.span.length], m.span, Limits()) for m in scanned]
    # Then it is the member, and the span says how it was stored
    assert got == list(members.values())
    assert {m.span.method for m in scanned} == {compression}


def test_a_span_that_disagrees_with_its_bytes_is_a_corrupt_member():
    # Given a deflated member and spans that lie about its size, its CRC, or are cut short
    data, (m,) = _scanned({"a.png": garment_png()}, zipfile.ZIP_DEFLATED)
    raw = data[m.span.offset:m.span.offset + m.span.length]
    lies = [(raw, Span(m.span.offset, m.span.length, m.span.method, m.span.size + 1, m.span.crc32)),
            (raw, Span(m.span.offset, m.span.length, m.span.method, m.span.size, m.span.crc32 ^ 1)),
            (raw[:-5], m.span)]
    # Then each read fails that item with "corrupt archive member"
    for body, span in lies:
        with pytest.raises(ArchiveError, match="corrupt archive member"):
            inflate_span(body, span, Limits())


def test_a_span_is_bounded_while_it_inflates():
    # Given a 3 MB member of zeros (a ratio near 1000:1), let through by a scan with lax limits
    lax = Limits(max_ratio=100_000)
    data, (m,) = _scanned({"zeros.png": b"\0" * 3_000_000}, zipfile.ZIP_DEFLATED, lax)
    raw = data[m.span.offset:m.span.offset + m.span.length]
    # Then reading it stops at the per-file limit, or at the ratio limit, instead of inflating it all
    with pytest.raises(LimitExceeded, match="limit per file"):
        inflate_span(raw, m.span, Limits(max_entry_bytes=1_000_000, max_ratio=100_000))
    with pytest.raises(LimitExceeded, match="compression ratio"):
        inflate_span(raw, m.span, Limits())
