"""`POST /v1/classify`: one image in, its label out, synchronously (the per-image service the batch API replaces).

Kept for small callers and as the benchmark's per-image baseline. The default backend loads once per web
process, on the first request (never at import, never in a parent that forks).
"""
from __future__ import annotations

import os
import threading

from flask import Blueprint, jsonify, request

from pipeline.classify import classify_items
from pipeline.ingest import display_name
from pipeline.jobs import ItemSpec
from pipeline.settings import Settings
from webhook import auth
from webhook.errors import ApiError
from webhook.extensions import services

bp = Blueprint("classify", __name__, url_prefix="/v1")
bp.before_request(auth.require_key)
_lock = threading.Lock()
_models: dict[tuple, tuple] = {}


def model(settings: Settings) -> tuple:
    """(backend, manifest) for the default backend, loaded once per process and weights folder."""
    key = (os.getpid(), str(settings.weights_dir), settings.default_backend)
    found = _models.get(key)
    if found is None:
        with _lock:  # gthread workers: two first requests must not load the model twice
            found = _models.get(key)
            if found is None:
                from pipeline.backends import load_backend
                from pipeline.manifest import load_manifest

                manifest = load_manifest(settings.weights_dir)
                # One inference thread: the web server's request threads are the parallelism.
                backend = load_backend(settings.default_backend, manifest=manifest, threads=1)
                found = _models[key] = (backend, manifest)
    return found


def _read_upload() -> tuple[str, bytes]:
    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "no image: send it as a multipart part named 'file'")
    limit = services().settings.limits.max_entry_bytes
    data = upload.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"image too large: the limit is {limit:,} bytes")
    return display_name(upload.filename, "file"), data


@bp.post("/classify")
def classify_one():
    """Classify the uploaded image with the default backend; a bad image is a JSON 400."""
    from pipeline.preprocess import prepare

    settings = services().settings
    name, data = _read_upload()
    backend, manifest = model(settings)
    cfg, max_pixels = manifest.preprocess, settings.limits.max_pixels
    (outcome,) = classify_items(
        [0], [ItemSpec(name, "upload")], read=lambda _: data,
        prepare=lambda raw: prepare(raw, cfg, max_pixels=max_pixels), predict=backend.predict,
    )
    if outcome.error is not None:
        raise ApiError(400, f"{name}: {outcome.error}")
    return jsonify(name=name, label=outcome.label, class_name=manifest.classes[outcome.label],
                   confidence=outcome.confidence, probabilities=outcome.probabilities)
