"""The storage folder shared by the web service and the workers: spooled uploads, one folder per job.

Every path here is built from names we chose (job UUIDs, part numbers); nothing a client sent becomes a path.
"""
from __future__ import annotations

import shutil
import time
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO, Sequence
from urllib.parse import unquote, urlparse

from pipeline.images.archive import ArchiveError, read_member
from pipeline.items import ItemSpec, SourceUnavailable
from pipeline.settings import Limits, Settings


def incoming_dir(storage_dir: Path) -> Path:
    """Where request bodies are spooled before a job exists."""
    path = storage_dir / "incoming"
    path.mkdir(parents=True, exist_ok=True)
    return path


def job_dir(storage_dir: Path, job_id: uuid.UUID) -> Path:
    """The folder holding a job's spooled uploads."""
    return storage_dir / "jobs" / str(uuid.UUID(str(job_id)))


def remove_job_files(storage_dir: Path, job_id: uuid.UUID) -> None:
    """Delete a job's spooled uploads (when the job was refused or could not be enqueued)."""
    shutil.rmtree(job_dir(storage_dir, job_id), ignore_errors=True)


def stale_entries(storage_dir: Path, older_than_s: float) -> tuple[list[Path], dict[uuid.UUID, Path]]:
    """Spooled request files, and job folders by job id, untouched for `older_than_s` (candidates to remove)."""
    now = time.time()
    spooled = [p for p in (storage_dir / "incoming").glob("*") if now - p.stat().st_mtime > older_than_s] \
        if (storage_dir / "incoming").is_dir() else []
    folders: dict[uuid.UUID, Path] = {}
    for folder in (storage_dir / "jobs").glob("*") if (storage_dir / "jobs").is_dir() else []:
        try:
            job_id = uuid.UUID(folder.name)
        except ValueError:
            continue
        if now - folder.stat().st_mtime > older_than_s:
            folders[job_id] = folder
    return spooled, folders


def remove(paths: list[Path]) -> None:
    """Delete spooled files and folders (already gone is fine)."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class ItemReader:
    """Reads items' bytes, keeping the last few archives open (a worker reads a job's chunks in turn)."""

    def __init__(self, storage_dir: Path, limits: Limits, keep_open: int = 4):
        self.storage_dir = storage_dir
        self.limits = limits
        self.keep_open = keep_open
        self._archives: OrderedDict[Path, zipfile.ZipFile] = OrderedDict()

    def plan(self, job_id: uuid.UUID, specs: Sequence[ItemSpec]) -> None:
        """Nothing to plan: members are read from the open archive in place."""

    def read(self, job_id: uuid.UUID, item: ItemSpec) -> bytes:
        """The bytes of one image; raises OSError or ArchiveError if they cannot be had."""
        path = job_dir(self.storage_dir, job_id) / Path(item.source).name
        if not path.parent.is_dir():
            # The whole job folder is gone: the storage is not mounted here (or not yet), no fault of the item.
            raise SourceUnavailable(f"the job folder of {job_id} is not there: is the storage mounted?")
        if item.member is None:
            size = path.stat().st_size
            if size > self.limits.max_entry_bytes:
                raise ArchiveError(f"file too large ({size:,} bytes)")
            return path.read_bytes()
        return read_member(self._archive(path), item.member, self.limits)

    def _archive(self, path: Path) -> zipfile.ZipFile:
        zf = self._archives.pop(path, None)
        if zf is None:
            try:
                zf = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise ArchiveError(f"archive cannot be read: {exc}") from None
        self._archives[path] = zf
        while len(self._archives) > self.keep_open:
            self._archives.popitem(last=False)[1].close()
        return zf

    def close(self) -> None:
        """Close every archive kept open."""
        while self._archives:
            self._archives.popitem()[1].close()


class LocalStore:
    """The `file://` store: the folder is the store, so spooling is publishing (README: Storage)."""

    def __init__(self, settings: Settings):
        self.url = settings.blob_url
        self.root = Path(unquote(urlparse(self.url).path))

    def scratch_dir(self, job_id: uuid.UUID) -> Path:
        """The job's folder in the store itself."""
        return job_dir(self.root, job_id)

    def spool_root(self) -> Path:
        """The store's folder itself (FB_STORAGE_URL's, which may be on another filesystem than FB_STORAGE_DIR)."""
        return self.root

    def item_source(self, job_id: uuid.UUID, name: str) -> str:
        """The part's name: the reader finds it in the job's folder."""
        return name

    def receive(self, job_id: uuid.UUID, index: int, file: BinaryIO) -> BinaryIO:
        """The spool file itself."""
        return file

    def publish(self, job_id: uuid.UUID, paths: Sequence[Path], streams: Sequence[object] = ()) -> None:
        """Nothing to do: the workers read the folder the parts were spooled to."""

    def discard_scratch(self, job_id: uuid.UUID) -> None:
        """Nothing to do: the spooled parts are what the workers read."""

    def remove_job(self, job_id: uuid.UUID) -> None:
        """Delete the job's folder."""
        remove_job_files(self.root, job_id)

    def check(self) -> None:
        """Nothing to ask: the operating system answers for a local folder on each use."""

    def reader(self, limits: Limits) -> ItemReader:
        """Today's reader: archives opened in place, the last few kept open."""
        return ItemReader(self.root, limits)
