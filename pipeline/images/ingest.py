"""From spooled upload parts to the list of images a job will classify (no web framework here)."""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import BinaryIO, Callable, Sequence

from pipeline.images import labels as labelling
from pipeline.images.archive import (
    ArchiveError,
    Member,
    is_zip,
    read_member,
    scan_archive,
)
from pipeline.images.imaging import FORMAT_NAMES, SNIFF_BYTES, sniff_format
from pipeline.items import ItemSpec
from pipeline.settings import Limits

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IngestError(ValueError):
    """An upload we refuse; the message is meant for the person who sent it."""


@dataclass(frozen=True)
class Part:
    """One uploaded file, already spooled to `path` (a name we chose) in the job's storage folder.

    A part that is an object in a store instead (POST /v1/jobs {"source": ...}) gives `source`, the name its
    items record, and `opener`, which returns a seekable file reading it (ranged reads).
    """

    path: Path | None
    filename: str
    source: str | None = None
    opener: Callable[[], BinaryIO] | None = None

    def open(self) -> BinaryIO:
        """The part's bytes as a seekable binary file."""
        return self.opener() if self.opener is not None else self.path.open("rb")

    @property
    def source_name(self) -> str:
        """What its items record as their source."""
        return self.source if self.source is not None else self.path.name


def display_name(raw: str | None, fallback: str) -> str:
    """A printable file name from what the client sent: no folders, no control characters, bounded length."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name  # strips both / and \\ folders
    name = _CONTROL.sub("", name).strip()
    return (name or fallback)[:255]


def member_name(raw: str) -> str:
    """A printable name for an archive member (kept as a label only, never used as a path)."""
    return _CONTROL.sub("", raw.replace("\\", "/")).lstrip("/")[:1024]


def _labelled(part: Part, members: list[Member], names: list[str], limits: Limits,
              classes: Sequence[str]) -> tuple[list[int | None], int | None]:
    """True labels for an archive's members, and the index of the labels.csv that gave them (if one did)."""
    if not classes:
        return [None] * len(members), None
    csvs = [m for m, n in zip(members, names) if n.rsplit("/", 1)[-1].lower() == labelling.LABELS_CSV]
    csvs = [m for m in csvs if member_name(m.name).count("/") <= 1]  # at the root, or in a zipped folder's root
    if csvs:
        sheet = min(csvs, key=lambda m: m.name.count("/"))
        with part.open() as f, zipfile.ZipFile(f) as zf:
            data = read_member(zf, sheet.index, limits)
        root = member_name(sheet.name).rpartition("/")[0]
        relative = [n[len(root) + 1:] if root and n.startswith(root + "/") else n for n in names]
        try:
            found = labelling.from_csv(data, relative, classes)
        except labelling.LabelsError as exc:
            raise IngestError(str(exc)) from None
        return [lab if m.is_image else None for m, lab in zip(members, found)], sheet.index
    found = labelling.from_folders([n for m, n in zip(members, names) if m.is_image], classes)
    if not found:
        return [None] * len(members), None
    in_order = iter(found)
    return [next(in_order) if m.is_image else None for m in members], None


def list_items(parts: list[Part], limits: Limits, classes: Sequence[str] = ()) -> list[ItemSpec]:
    """Every image of the upload, in order: plain images, then each archive's files in directory order.

    With `classes`, an archive with one folder per class or a `labels.csv` at its root gives its images true
    labels (the labels.csv itself is not an item). Raises IngestError (or ArchiveError) for an empty upload, a
    part that is neither an image nor a ZIP, an archive without images, a bad labels.csv, or an archive that
    breaks a limit.
    """
    if not parts:
        raise IngestError("no files uploaded: send one or more parts named 'files'")
    specs: list[ItemSpec] = []
    budget = limits.max_total_bytes
    for part in parts:
        with part.open() as f:
            head = f.read(SNIFF_BYTES)
            if not head:
                raise IngestError(f"{part.filename!r} is empty")
            if is_zip(head):
                f.seek(0)
                try:
                    members = scan_archive(f, limits, budget)
                except ArchiveError as exc:
                    raise type(exc)(f"{part.filename}: {exc}") from None
                if not any(m.is_image for m in members):
                    raise IngestError(f"{part.filename!r} contains no images")
                budget -= sum(m.size for m in members)
                names = [member_name(m.name) for m in members]
                truth, sheet = _labelled(part, members, names, limits, classes)
                specs += [ItemSpec(f"{part.filename}/{n}", part.source_name, m.index, t, m.span)
                          for m, n, t in zip(members, names, truth) if m.index != sheet]
            elif sniff_format(head) is not None:
                specs.append(ItemSpec(part.filename, part.source_name, None))
            else:
                raise IngestError(
                    f"{part.filename!r} is neither an image ({FORMAT_NAMES}) nor a ZIP archive"
                )
        if len(specs) > limits.max_items:
            raise IngestError(f"too many images: a job holds at most {limits.max_items:,}")
    return specs
