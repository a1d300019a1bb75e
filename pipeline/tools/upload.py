"""What `fashion-batch submit` sends: files as they are, folders walked and zipped on the fly.

A folder's images (found by their content, not their names) are streamed as stored ZIP parts built while
the request is sent: nothing is held whole in memory or written to disk, and the length of every part is
known beforehand, so the server can refuse an upload that is too large before reading it. ZIPs found in a
folder go as parts of their own, and a `labels.csv` at the folder's root goes in each generated ZIP's root,
where the server reads true labels from. Every other file is left out, and `Upload.skipped` says why.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Union

from zipstream import ZIP_STORED, ZipStream

from pipeline.images.archive import is_zip
from pipeline.images.imaging import SNIFF_BYTES, sniff_format
from pipeline.images.labels import LABELS_CSV

# One generated ZIP stays below these, so it never needs ZIP64 and never trips the server's per-archive
# entry limit (FB_MAX_ZIP_ENTRIES, 50,000 by default); a bigger folder becomes several parts of one job.
PART_MAX_ENTRIES = 5_000
PART_MAX_BYTES = 1024**3

Piece = Union[bytes, Path, ZipStream]
_IMAGE_NAMES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")


class UploadError(ValueError):
    """A path that cannot be sent; the message names it."""


@dataclass(frozen=True)
class Skipped:
    """A file of a folder that is not sent, and why."""

    path: Path
    reason: str


@dataclass
class Upload:
    """The parts of one job, each `(filename, body)`, and the folder files that were left out (with why)."""

    parts: list[tuple[str, Piece]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def images_in_folders(self) -> int:
        return sum(len([i for i in body.info_list() if i["name"] != LABELS_CSV])
                   for _, body in self.parts if isinstance(body, ZipStream))


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_BYTES)


def _walk(folder: Path) -> Iterator[Path]:
    """Every regular file under `folder`, in a stable order; hidden files and folders are left out."""
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symlinked folders: no loops
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if not name.startswith(".") and path.is_file():
                yield path


def _why_not(path: Path) -> str:
    if path.suffix.lower() in _IMAGE_NAMES:
        return f"named like an image ({path.suffix}), but its content is not one we read"
    return "not an image or a ZIP archive (by its content)"


def collect(paths: list[Path]) -> Upload:
    """Plan the upload of `paths` (files and folders) as one job; reads only each file's first bytes."""
    upload = Upload()
    for path in paths:
        if path.is_file():
            upload.parts.append((path.name, path))
        elif path.is_dir():
            _add_folder(upload, path)
        else:
            raise UploadError(f"no such file or folder: {path}")
    if not upload.parts:
        raise UploadError(f"no images or ZIP archives found in {', '.join(map(str, paths))}")
    return upload


def _add_folder(upload: Upload, folder: Path) -> None:
    label = folder.resolve().name or "upload"
    labels = next((p for p in _walk(folder) if p.parent == folder and p.name.lower() == LABELS_CSV), None)
    zs: ZipStream | None = None
    count = size = generated = 0
    for path in _walk(folder):
        if path == labels:
            continue
        head = _head(path)
        relative = path.relative_to(folder).as_posix()
        if is_zip(head):
            upload.parts.append((f"{label}/{relative}", path))
            continue
        if sniff_format(head) is None:
            upload.skipped.append(Skipped(path, _why_not(path)))
            continue
        nbytes = path.stat().st_size
        if zs is None or count >= PART_MAX_ENTRIES or size + nbytes > PART_MAX_BYTES:
            zs = ZipStream(compress_type=ZIP_STORED, sized=True)  # photos are compressed already
            generated += 1
            upload.parts.append((label if generated == 1 else f"{label}-{generated}", zs))
            count = size = 0
            if labels is not None:  # each part is read on its own: each carries the labels, at its root
                zs.add_path(str(labels), LABELS_CSV)
        zs.add_path(str(path), relative)
        count, size = count + 1, size + nbytes
    if labels is not None and zs is None:
        upload.skipped.append(Skipped(labels, "a labels.csv with no image beside it to label"))


class Multipart:
    """A multipart/form-data body streamed from its pieces, with a known length (so the server can refuse early)."""

    def __init__(self, fields: dict[str, str], parts: list[tuple[str, Piece]] | list[Path]):
        self.boundary = uuid.uuid4().hex
        self._pieces: list[Piece] = []
        for name, value in fields.items():
            self._pieces.append(self._head(f'name="{name}"') + value.encode() + b"\r\n")
        for part in parts:
            filename, body = (part.name, part) if isinstance(part, Path) else part
            filename = filename.replace('"', "_").replace("\r", "").replace("\n", "")
            zipped = isinstance(body, ZipStream) or filename.lower().endswith(".zip")
            mime = "application/zip" if zipped else "application/octet-stream"
            self._pieces += [self._head(f'name="files"; filename="{filename}"', mime), body, b"\r\n"]
        self._pieces.append(f"--{self.boundary}--\r\n".encode())

    def _head(self, disposition: str, mime: str | None = None) -> bytes:
        head = f"--{self.boundary}\r\nContent-Disposition: form-data; {disposition}\r\n"
        return (head + (f"Content-Type: {mime}\r\n" if mime else "") + "\r\n").encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self._pieces)

    def __iter__(self) -> Iterator[bytes]:
        for piece in self._pieces:
            if isinstance(piece, Path):
                with piece.open("rb") as f:
                    while block := f.read(1 << 20):
                        yield block
            elif isinstance(piece, ZipStream):
                yield from piece
            else:
                yield piece
