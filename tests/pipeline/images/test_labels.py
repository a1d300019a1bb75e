"""pipeline.images.labels: class names as people write them, folders and labels.csv."""
from __future__ import annotations

import pytest

from pipeline.images.labels import LabelsError, class_index, from_csv, from_folders
from tests.pipeline.images.test_ingest import CLASSES


@pytest.mark.parametrize("written, index", [("T-shirt/top", 0), ("tshirt", 0), ("t-shirt_top", 0), ("TOP", 0),
                                            ("Ankle boot", 9), ("ankle_boot", 9), ("ankleboot", 9), ("7", 7),
                                            (" Coat ", 4)])
def test_class_names_match_loosely(written, index):
    assert class_index(written, CLASSES) == index


@pytest.mark.parametrize("written", ["boot", "10", "jumper", ""])
def test_names_that_are_no_class_match_nothing(written):
    assert class_index(written, CLASSES) is None


def test_the_innermost_class_folder_counts_and_every_image_needs_one():
    assert from_folders(["train/Coat/a.png", "Bag/old/Shirt/b.png"], CLASSES) == [4, 6]
    assert from_folders(["Coat/a.png", "b.png"], CLASSES) is None
    assert from_folders([], CLASSES) is None


def test_a_csv_without_header_matches_paths_then_file_names():
    labels = from_csv(b"x/a.png,Trouser\r\nb.png,Bag\r\n", ["x/a.png", "y/b.png", "c.png"], CLASSES)
    assert labels == [1, 8, None]
    with pytest.raises(LabelsError, match="line 1: expected name,label"):
        from_csv(b"lonely.png\n", ["lonely.png"], CLASSES)
    with pytest.raises(LabelsError, match="UTF-8"):
        from_csv(b"\xff\xfe\x00a", ["a"], CLASSES)
