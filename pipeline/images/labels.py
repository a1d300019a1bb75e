"""True labels that come with an upload: one folder per class, or a `labels.csv` at the archive's root.

Pure: names and bytes in, class indices out. Class names match case-insensitively, ignoring punctuation and
spaces (`T-shirt_top`, `tshirt top`, `Ankle boot`), or as the class index (`0`-`9`).
"""
from __future__ import annotations

import csv
import io
import re
from typing import Sequence

LABELS_CSV = "labels.csv"


class LabelsError(ValueError):
    """A labels.csv that cannot be used; the message says which line and why."""


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def class_index(value: str, classes: Sequence[str]) -> int | None:
    """The index of the class `value` names ('3', 'Dress', 't-shirt_top' ...), or None if it names none."""
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" and other Unicode digits are digits, but no int() reads them
        return int(value) if int(value) < len(classes) else None
    keys = {_key(c): i for i, c in enumerate(classes)}
    # "T-shirt/top" is often written "tshirt" or "top"; "Ankle boot" as "boot" is too loose to guess.
    keys.update({"tshirt": 0, "top": 0} if classes and _key(classes[0]) == "tshirttop" else {})
    return keys.get(_key(value))


def from_folders(names: Sequence[str], classes: Sequence[str]) -> list[int | None] | None:
    """Labels from the folder each member sits in (the innermost folder that names a class).

    Returns None unless every name has such a folder: a half-matching layout is not a labelled set.
    """
    labels: list[int | None] = []
    for name in names:
        found = None
        for folder in reversed(name.split("/")[:-1]):
            found = class_index(folder, classes)
            if found is not None:
                break
        if found is None:
            return None
        labels.append(found)
    return labels or None


def from_csv(data: bytes, names: Sequence[str], classes: Sequence[str]) -> list[int | None]:
    """Labels for `names` from a labels.csv (`name,label[,...]`, a header row optional).

    A row names an image by its path inside the archive, or by its file name alone; images without a row
    stay unlabelled. Raises LabelsError for a label that names no class.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelsError("labels.csv is not UTF-8 text") from None
    by_path: dict[str, int] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not row[0].strip() or (n == 1 and _key(row[0]) in ("name", "file", "filename", "path")):
            continue
        if len(row) < 2:
            raise LabelsError(f"labels.csv line {n}: expected name,label")
        label = class_index(row[1], classes)
        if label is None:
            raise LabelsError(f"labels.csv line {n}: {row[1].strip()!r} names no class "
                              f"(classes: {', '.join(classes)})")
        by_path[row[0].strip().replace("\\", "/").lstrip("./")] = label
    by_base = {path.rsplit("/", 1)[-1]: label for path, label in by_path.items()}
    return [by_path[name] if name in by_path else by_base.get(name.rsplit("/", 1)[-1]) for name in names]
