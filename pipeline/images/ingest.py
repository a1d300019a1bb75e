"""From spooled upload parts to the list of images a job will classify (no web framework here)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from pipeline.images.archive import ArchiveError, is_zip, scan_archive
from pipeline.images.imaging import sniff_format
from pipeline.items import ItemSpec
from pipeline.settings import Limits

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IngestError(ValueError):
    """An upload we refuse; the message is meant for the person who sent it."""


@dataclass(frozen=True)
class Part:
    """One uploaded file, already spooled to `path` (a name we chose) in the job's storage folder."""

    path: Path
    filename: str


def display_name(raw: str | None, fallback: str) -> str:
    """A printable file name from what the client sent: no folders, no control characters, bounded length."""
    name = PureWindowsPath(PurePosixPath(raw or "").name).name  # strips both / and \\ folders
    name = _CONTROL.sub("", name).strip()
    return (name or fallback)[:255]


def member_name(raw: str) -> str:
    """A printable name for an archive member (kept as a label only, never used as a path)."""
    return _CONTROL.sub("", raw.replace("\\", "/")).lstrip("/")[:1024]


def list_items(parts: list[Part], limits: Limits) -> list[ItemSpec]:
    """Every image of the upload, in order: plain images, then each archive's files in directory order.

    Raises IngestError (or ArchiveError) for an empty upload, a part that is neither an image nor a ZIP,
    an archive without images, or an archive that breaks a limit.
    """
    if not parts:
        raise IngestError("no files uploaded: send one or more parts named 'files'")
    specs: list[ItemSpec] = []
    budget = limits.max_total_bytes
    for part in parts:
        with part.path.open("rb") as f:
            head = f.read(16)
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
                specs += [ItemSpec(f"{part.filename}/{member_name(m.name)}", part.path.name, m.index) for m in members]
            elif sniff_format(head) is not None:
                specs.append(ItemSpec(part.filename, part.path.name, None))
            else:
                raise IngestError(
                    f"{part.filename!r} is neither an image (JPEG, PNG, WebP, GIF, BMP, TIFF) nor a ZIP archive"
                )
        if len(specs) > limits.max_items:
            raise IngestError(f"too many images: a job holds at most {limits.max_items:,}")
    return specs
