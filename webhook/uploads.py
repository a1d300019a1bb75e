"""Request bodies are streamed to files in the storage folder, never buffered whole in memory."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import Request, current_app

from pipeline.blobs.local import incoming_dir


class SpoolingRequest(Request):
    """A Flask request whose uploaded files are written straight into `<storage>/incoming/`."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        storage = current_app.extensions["fashion_batch"].settings.storage_dir
        f = tempfile.NamedTemporaryFile(dir=incoming_dir(storage), prefix="part-", suffix=".upload", delete=False)
        self.__dict__.setdefault("spooled", []).append(Path(f.name))
        return f


def discard_spooled(request: Request) -> None:
    """Delete the request's spooled files that were not moved into a job (teardown hook)."""
    for path in request.__dict__.get("spooled", []):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
