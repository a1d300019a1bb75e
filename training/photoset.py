"""Read a labelled set of photos from a folder or a ZIP, in either of two layouts.

1. A CSV `labels.csv` with columns `name,label[,source]` beside the images (or beside an `images/` folder);
   `label` is a class index (0-9) or a class name.
2. One sub-folder per class, named after the class (`T-shirt_top`, `tshirt-top`, `Ankle boot`...) or its index.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Sequence

from pipeline.images import labels

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Photo:
    """One labelled photo; `data` is the file's bytes, as a worker would receive them."""

    name: str
    label: int
    source: str
    data: bytes


def class_index(value: str, classes: Sequence[str]) -> int:
    """Map '3', 'Dress', 't-shirt_top' ... to a class index (as uploads are read); ValueError if it names none."""
    found = labels.class_index(value, classes)
    if found is None:
        raise ValueError(f"label {value!r} is not a class index or one of {list(classes)}")
    return found


class _Tree:
    """A read-only view of files in a folder or a ZIP, by POSIX path."""

    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        self._root = path
        if self._zip is not None:
            self.names = [n for n in self._zip.namelist() if not n.endswith("/")]
        else:
            self.names = [p.relative_to(path).as_posix() for p in sorted(path.rglob("*")) if p.is_file()]
        self._set = set(self.names)

    def has(self, name: str) -> bool:
        return name in self._set

    def read(self, name: str) -> bytes:
        return self._zip.read(name) if self._zip is not None else (self._root / name).read_bytes()


def _from_csv(tree: _Tree, csv_name: str, classes: Sequence[str]) -> list[Photo]:
    base = PurePosixPath(csv_name).parent
    photos = []
    for row in csv.DictReader(io.StringIO(tree.read(csv_name).decode("utf-8-sig"))):
        name = row["name"]
        for cand in (base / name, base / "images" / name):
            if tree.has(cand.as_posix()):
                photos.append(Photo(name, class_index(row["label"], classes), row.get("source") or "-",
                                    tree.read(cand.as_posix())))
                break
        else:
            raise FileNotFoundError(f"{csv_name} lists {name!r}, which is not beside it nor under images/")
    return photos


def _from_folders(tree: _Tree, classes: Sequence[str]) -> list[Photo]:
    photos = []
    for name in tree.names:
        parts = PurePosixPath(name).parts
        if len(parts) < 2 or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        try:
            label = class_index(parts[-2], classes)
        except ValueError:
            continue  # a folder that names no class (e.g. __MACOSX) is not part of the set
        photos.append(Photo(name, label, parts[-2], tree.read(name)))
    return photos


def load_photos(path: Path, classes: Sequence[str]) -> list[Photo]:
    """All labelled photos under `path` (a folder or .zip); the shallowest labels.csv wins over folders."""
    tree = _Tree(Path(path))
    csvs = sorted((n for n in tree.names if PurePosixPath(n).name == "labels.csv"), key=lambda n: n.count("/"))
    photos = _from_csv(tree, csvs[0], classes) if csvs else _from_folders(tree, classes)
    if not photos:
        raise ValueError(f"no labelled images in {path}: expected labels.csv (name,label[,source]) or "
                         "one sub-folder per class")
    return photos
