"""A deterministic, stratified hold-out split of a labelled photo set (realphoto-train).

Within every (class, source) group the photos are ordered by a salted SHA-256 of their file name and the
first `ceil(frac * n)` of them are held out (so a group of 2 or more keeps at least one for training). The split
depends only on the names, the salt and the fraction: no list is stored, adding photos to one group never
moves photos of another, and the held-out part is what candidates are chosen by (realphoto-dev is never used).

    python -m training.realphoto_split ../shared/datasets/realphoto-train   # prints the counts per group
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from training.photoset import Photo, load_photos
from training.report import CLASSES

SALT = "fashion-batch-holdout-v1"
HOLDOUT_FRAC = 0.25


def _rank(name: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()


def held_out_names(items: Sequence[tuple[str, int, str]], frac: float = HOLDOUT_FRAC,
                   salt: str = SALT) -> set[str]:
    """Names held out from (name, label, source) triples: `frac` of every (label, source) group."""
    groups: dict[tuple[int, str], list[str]] = defaultdict(list)
    for name, label, source in items:
        groups[(label, source)].append(name)
    out: set[str] = set()
    for names in groups.values():
        k = min(math.ceil(frac * len(names)), len(names) - 1) if len(names) > 1 else 0
        out.update(sorted(names, key=lambda n: _rank(n, salt))[:k])
    return out


def split_photos(photos: Sequence[Photo], frac: float = HOLDOUT_FRAC,
                 salt: str = SALT) -> tuple[list[Photo], list[Photo]]:
    """(train, held-out) lists, each in the input order."""
    held = held_out_names([(p.name, p.label, p.source) for p in photos], frac, salt)
    return [p for p in photos if p.name not in held], [p for p in photos if p.name in held]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Show the deterministic hold-out split of a labelled photo set.")
    p.add_argument("photos", type=Path)
    p.add_argument("--frac", type=float, default=HOLDOUT_FRAC)
    args = p.parse_args(argv)
    photos = load_photos(args.photos, CLASSES)
    train, held = split_photos(photos, args.frac)
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for i, part in enumerate((train, held)):
        for ph in part:
            counts[(CLASSES[ph.label], ph.source)][i] += 1
    print("| class | source | train | held out |\n|---|---|---:|---:|")
    for (c, s), (a, b) in sorted(counts.items(), key=lambda kv: (CLASSES.index(kv[0][0]), kv[0][1])):
        print(f"| {c} | {s} | {a} | {b} |")
    print(f"| all | | {len(train)} | {len(held)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
