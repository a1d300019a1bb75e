"""Request bodies are streamed to files in the storage folder, never buffered whole in memory (and, with S3
storage, on to the bucket as they arrive)."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from flask import Request, current_app

from pipeline.blobs.local import incoming_dir


class SpoolingRequest(Request):
    """A Flask request whose uploaded files are written straight into `<storage>/incoming/`, through the blob
    store's `receive` (S3: each 8 MiB is uploaded as soon as it has arrived)."""

    @property
    def job_id(self) -> uuid.UUID:
        """The id the job of this request will have (chosen on first use: the parts' object keys carry it)."""
        return self.__dict__.setdefault("job_id", uuid.uuid4())

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        svc = current_app.extensions["fashion_batch"]
        # Spooled beside the job folders (the store's own folder for file://), so that moving a part into its job
        # is a rename on one filesystem, never a copy (nor EXDEV, when FB_STORAGE_URL is on another disk).
        f = tempfile.NamedTemporaryFile(dir=incoming_dir(svc.store.spool_root()), prefix="part-",
                                        suffix=".upload", delete=False)
        self.__dict__.setdefault("spooled", []).append(Path(f.name))
        streams = self.__dict__.setdefault("streams", [])
        stream = svc.store.receive(self.job_id, len(streams), f)
        streams.append(stream)
        return stream


def discard_spooled(request: Request) -> None:
    """Delete the request's spooled files that were not moved into a job, and give up unfinished uploads
    (teardown hook)."""
    for stream in request.__dict__.get("streams", []):
        if hasattr(stream, "abort"):
            stream.abort()
    for path in request.__dict__.get("spooled", []):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
