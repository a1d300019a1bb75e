"""From spooled parts to items: names, order, and refusals."""
from __future__ import annotations

import pytest

from pipeline.images.archive import LimitExceeded
from pipeline.images.ingest import IngestError, Part, display_name, list_items
from pipeline.settings import Limits
from tests.helpers import garment_png, make_zip


def part(tmp_path, name: str, data: bytes, filename: str | None = None) -> Part:
    path = tmp_path / name
    path.write_bytes(data)
    return Part(path, filename or name)


def test_images_and_archive_members_become_items_in_order(tmp_path):
    z = make_zip(tmp_path / "src.zip", {"b/1.png": garment_png(), "a.jpg": garment_png(fmt="JPEG")})
    parts = [part(tmp_path, "part-00000", garment_png(), "x.png"), part(tmp_path, "part-00001", z.read_bytes(), "p.zip")]
    specs = list_items(parts, Limits())
    assert [(s.name, s.source, s.member) for s in specs] == [
        ("x.png", "part-00000", None), ("p.zip/b/1.png", "part-00001", 0), ("p.zip/a.jpg", "part-00001", 1)]


def test_member_names_are_labels_not_paths(tmp_path):
    z = make_zip(tmp_path / "src.zip", {"../../etc/passwd.png": garment_png(), "/abs/x.png": garment_png()})
    specs = list_items([part(tmp_path, "part-00000", z.read_bytes(), "evil.zip")], Limits())
    assert [s.name for s in specs] == ["evil.zip/../../etc/passwd.png", "evil.zip/abs/x.png"]
    assert {s.source for s in specs} == {"part-00000"}  # the only path used is the part we spooled


def test_display_names_drop_folders_and_control_characters():
    assert display_name("C:\\Users\\me\\shirt.png", "f") == "shirt.png"
    assert display_name("../../x\x00y.png", "f") == "xy.png"
    assert display_name("", "file-3") == "file-3"


def test_refusals(tmp_path):
    with pytest.raises(IngestError, match="no files"):
        list_items([], Limits())
    with pytest.raises(IngestError, match="neither an image"):
        list_items([part(tmp_path, "p1", b"%PDF-1.7 ...", "doc.pdf")], Limits())
    many = make_zip(tmp_path / "m.zip", {f"{i}.png": garment_png() for i in range(5)})
    with pytest.raises(IngestError, match="too many images"):
        list_items([part(tmp_path, "p2", many.read_bytes(), "m.zip")], Limits(max_items=3))
    with pytest.raises(LimitExceeded, match="m.zip"):
        list_items([part(tmp_path, "p3", many.read_bytes(), "m.zip")], Limits(max_zip_entries=2))
