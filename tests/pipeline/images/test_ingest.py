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


CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")


def test_an_archive_with_one_folder_per_class_gives_true_labels(tmp_path):
    # Given a zipped folder with a sub-folder per class (names as people write them) and a stray note
    z = make_zip(tmp_path / "src.zip", {"mine/trouser/1.png": garment_png(), "mine/T-shirt_top/2.jpg":
                                        garment_png(fmt="JPEG"), "mine/ankle boot/3.png": garment_png(),
                                        "mine/README.txt": b"my labelled photos"})
    # When it is listed with the model's classes
    specs = list_items([part(tmp_path, "part-00000", z.read_bytes(), "set.zip")], Limits(), CLASSES)
    # Then each image carries its folder's class; the note is an item without one
    assert [(s.name.split("/", 1)[1], s.true_label) for s in specs] == [
        ("mine/trouser/1.png", 1), ("mine/T-shirt_top/2.jpg", 0), ("mine/ankle boot/3.png", 9),
        ("mine/README.txt", None)]
    # And without the classes (or when not every image has a class folder) nothing is labelled
    assert {s.true_label for s in list_items([part(tmp_path, "p1", z.read_bytes(), "set.zip")], Limits())} == {None}
    mixed = make_zip(tmp_path / "mixed.zip", {"Coat/1.png": garment_png(), "holiday/2.png": garment_png()})
    assert {s.true_label for s in list_items([part(tmp_path, "p2", mixed.read_bytes())], Limits(), CLASSES)} == {None}


def test_a_labels_csv_at_the_root_labels_the_images_and_is_not_an_item(tmp_path):
    # Given images under images/ and a labels.csv naming them by file name, a class name or an index
    sheet = b"name,label,source\nimages/a.png,Dress,shop\nb.png,8,shop\n"
    z = make_zip(tmp_path / "src.zip", {"labels.csv": sheet, "images/a.png": garment_png(),
                                        "images/b.png": garment_png(), "images/c.png": garment_png()})
    specs = list_items([part(tmp_path, "part-00000", z.read_bytes(), "set.zip")], Limits(), CLASSES)
    # Then the listed images carry their labels, an unlisted one none, and the sheet is no item
    assert [(s.name, s.true_label) for s in specs] == [
        ("set.zip/images/a.png", 3), ("set.zip/images/b.png", 8), ("set.zip/images/c.png", None)]


def test_a_labels_csv_naming_no_class_is_refused_with_its_line(tmp_path):
    z = make_zip(tmp_path / "src.zip", {"labels.csv": b"a.png,Dress\nb.png,Jumpsuit\n", "a.png": garment_png(),
                                        "b.png": garment_png()})
    with pytest.raises(IngestError, match="line 2: 'Jumpsuit' names no class"):
        list_items([part(tmp_path, "part-00000", z.read_bytes(), "set.zip")], Limits(), CLASSES)
