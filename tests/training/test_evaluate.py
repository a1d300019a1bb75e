"""training.evaluate and its photo-set reader: both layouts, folders and ZIPs, the full report."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image, ImageDraw

from training.evaluate import _label_shares, main
from training.photoset import class_index, load_photos
from training.report import CLASSES


def jpeg(fill: str = "black") -> bytes:
    img = Image.new("RGB", (60, 80), "white")
    ImageDraw.Draw(img).rectangle((20, 10, 40, 70), fill=fill)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def csv_folder(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"{i}.jpg").write_bytes(jpeg())
    (tmp_path / "labels.csv").write_text("name,label,source\n0.jpg,1,a\n1.jpg,Trouser,a\n2.jpg,3,b\n")
    return tmp_path


def test_csv_layout_reads_labels_by_index_or_name_and_sources(csv_folder):
    photos = load_photos(csv_folder, CLASSES)
    assert [p.label for p in photos] == [1, 1, 3] and [p.source for p in photos] == ["a", "a", "b"]


def test_class_folders_inside_a_zip(tmp_path):
    # Given a ZIP with one folder per class (names spelled loosely)
    path = tmp_path / "set.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("set/T-shirt_top/a.jpg", jpeg())
        z.writestr("set/ankle boot/b.jpg", jpeg())
        z.writestr("__MACOSX/set/._a.jpg", b"junk")
    # Then both are read with the right label and nothing else
    assert sorted(p.label for p in load_photos(path, CLASSES)) == [0, 9]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="not a class"):
        class_index("Hat", CLASSES)


def test_evaluate_reports_every_backend_on_both_sets(dry_run_weights, fashion_dir, csv_folder, tmp_path, capsys):
    # Given exported weights, a Fashion-MNIST dir and a labelled photo folder
    # When evaluate runs with every comparison switched on
    assert main(["--weights", str(dry_run_weights), "--data-dir", str(fashion_dir), "--limit", "50",
                 "--raw", "--photos", str(csv_folder), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    # Then every backend is reported on every set, per class and per source, and confusion PNGs are written
    d = dry_run_weights.name
    assert out.count(f"| {d}/eager | {d}/torchscript | {d}/onnx | {d}/int8 |") == 4
    assert "source a (2)" in out and "through each model's preprocessing" in out and "naive" in out
    assert f"naive baseline, labels it gives ({d}/eager): " in out
    assert (tmp_path / "o" / f"confusion_photos_{d}_int8.png").is_file()


def test_both_shipped_models_side_by_side(csv_folder, fashion_dir, tmp_path, capsys):
    # Given the shipped models (weights/photo and weights/fmnist) and a labelled photo folder
    # When evaluate runs over all models, one backend each
    assert main(["--backends", "onnx", "--data-dir", str(fashion_dir), "--limit", "20", "--photos",
                 str(csv_folder), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    # Then each model has its column on photos and on Fashion-MNIST PNGs, with ECE, and the naive baseline is
    # the 28x28 model's only
    assert out.count("| fmnist/onnx | photo/onnx |") == 2
    assert "naive grey + resize baseline" in out and "| fmnist/onnx |\n" in out


def test_label_shares_lists_the_labels_given_most_frequent_first():
    # Given predictions that say Bag three times, Trouser once and fail one image (-1)
    pred = np.array([8, 1, 8, -1, 8])
    # Then the shares are of all images, most frequent first, labels never given left out
    assert _label_shares(pred, CLASSES) == "Bag 60%, Trouser 20%"


def test_two_weights_directories_side_by_side_with_calibration(dry_run_weights, csv_folder, tmp_path, capsys):
    # Given two weights directories (here the same model under two names)
    import shutil

    other = tmp_path / "candidate"
    shutil.copytree(dry_run_weights, other)
    # When evaluate compares them on a labelled photo set
    assert main(["--weights", str(dry_run_weights), "--weights", str(other), "--backends", "onnx", "--no-fmnist",
                 "--photos", str(csv_folder), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    # Then each directory has its own column, with accuracy and the calibration error, and a reliability diagram
    assert f"| {dry_run_weights.name}/onnx | candidate/onnx |" in out
    ece_row = next(line for line in out.splitlines() if line.startswith("| ECE (15 bins)"))
    assert len(set(ece_row.split("|")[2:4])) == 1  # the same model: the same figure
    assert (tmp_path / "o" / "reliability_candidate_onnx.png").is_file()
