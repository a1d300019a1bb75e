"""pipeline.tools.upload: folders walked, images found by content, zipped on the fly with a known length."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from pipeline.tools import upload
from pipeline.tools.upload import Multipart, UploadError, collect
from tests.helpers import garment_png, make_zip


def photo_folder(root: Path) -> Path:
    """A folder as users have them: images in sub-folders, odd names, a ZIP, notes and hidden files."""
    (root / "tops" / "summer").mkdir(parents=True)
    (root / "bottoms").mkdir()
    (root / ".thumbnails").mkdir()
    (root / "tops" / "a.png").write_bytes(garment_png())
    (root / "tops" / "summer" / "b.JPG").write_bytes(garment_png(fmt="JPEG"))
    (root / "bottoms" / "scan-0001").write_bytes(garment_png("trouser", fmt="WEBP"))  # no extension
    (root / "bottoms" / "notes.txt").write_bytes(b"sizes: M, L")
    (root / ".thumbnails" / "t.png").write_bytes(garment_png())
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    make_zip(root / "more.zip", {"c.png": garment_png()})
    return root


def test_a_folder_becomes_one_zip_part_of_its_images_plus_its_zips(tmp_path):
    # Given a folder of images, a ZIP, a text file and hidden files
    folder = photo_folder(tmp_path / "photos")
    # When the upload is planned
    plan = collect([folder])
    # Then the images (found by content, whatever their names) go in one generated ZIP, the ZIP as it is
    names = [name for name, _ in plan.parts]
    assert sorted(names) == ["photos", "photos/more.zip"]
    assert plan.images_in_folders == 3
    assert [s.path for s in plan.skipped] == [folder / "bottoms" / "notes.txt"]
    # And the multipart body has exactly the length it announces, and the generated ZIP opens
    body = Multipart({"backend": "onnx"}, plan.parts)
    raw = b"".join(body)
    assert len(raw) == len(body)
    start = raw.index(b"\r\n\r\n", raw.index(b'filename="photos"\r\n')) + 4
    end = raw.index(b"\r\n--" + body.boundary.encode(), start)
    with zipfile.ZipFile(io.BytesIO(raw[start:end])) as zf:
        assert zf.namelist() == ["bottoms/scan-0001", "tops/a.png", "tops/summer/b.JPG"]
        assert zf.read("tops/a.png") == (folder / "tops" / "a.png").read_bytes()


def test_a_root_labels_csv_travels_with_the_images_and_every_file_left_out_says_why(tmp_path):
    # Given a folder with a labels.csv at its root, two photos, notes and a file named .jpg that is no image
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "labels.csv").write_text("name,label\na.png,Shirt\nb.png,Trouser\n")
    (folder / "a.png").write_bytes(garment_png())
    (folder / "b.png").write_bytes(garment_png("trouser"))
    (folder / "notes.txt").write_text("sizes")
    (folder / "fake.jpg").write_bytes(b"this is not a JPEG")
    # When the upload is planned
    plan = collect([folder])
    # Then the labels.csv is at the root of the generated ZIP, beside the photos, and counts as no image
    (_, zs), = plan.parts
    assert sorted(i["name"] for i in zs.info_list()) == ["a.png", "b.png", "labels.csv"]
    assert plan.images_in_folders == 2
    # And the two files left out are reported, each with its reason
    reasons = {s.path.name: s.reason for s in plan.skipped}
    assert set(reasons) == {"notes.txt", "fake.jpg"}
    assert "content is not one" in reasons["fake.jpg"] and "not an image" in reasons["notes.txt"]


def test_a_big_folder_is_split_into_several_parts_of_one_job(tmp_path, monkeypatch):
    # Given more images than one generated part holds
    monkeypatch.setattr(upload, "PART_MAX_ENTRIES", 2)
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(garment_png())
    # When the upload is planned / Then they go as three parts, none over the limit
    plan = collect([folder])
    assert [name for name, _ in plan.parts] == ["many", "many-2", "many-3"]
    assert [len(zs.info_list()) for _, zs in plan.parts] == [2, 2, 1]


def test_missing_paths_and_folders_without_images_are_refused(tmp_path):
    with pytest.raises(UploadError, match="no such file or folder"):
        collect([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(UploadError, match="no images or ZIP archives"):
        collect([tmp_path / "empty"])
