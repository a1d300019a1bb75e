"""`POST /v1/classify`: one image in, its label out, synchronously (the per-image service the batch API replaces).

Kept for small callers and as the benchmark's per-image baseline. It runs in the web process on ONNX Runtime
(the model's default CPU backend if that is onnx or int8, else onnx), each model imported and loaded once per
process on its first request: never at import, never in a parent that forks, and never torch. The form field
`model` chooses the model (FB_DEFAULT_MODEL by default), as for jobs. Without the `classify` extra
installed the endpoint answers 503 and says so; batch jobs go through the workers either way.
"""
from __future__ import annotations

import os
import threading

from flask import Blueprint, jsonify, request

from pipeline.images.ingest import display_name
from pipeline.inference.classify import classify_items
from pipeline.items import ItemSpec
from pipeline.settings import Settings
from webhook import auth
from webhook.errors import ApiError
from webhook.extensions import services

bp = Blueprint("classify", __name__, url_prefix="/v1")
bp.before_request(auth.require_key)
_lock = threading.Lock()
_models: dict[tuple, tuple] = {}


WEB_BACKENDS = ("onnx", "int8")  # the runtimes the web process may load: ONNX Runtime, no torch


def web_backend(settings: Settings, manifest) -> str:
    """The backend the web process classifies `manifest`'s model with."""
    backend = settings.default_backend_for("cpu", manifest.serving)
    return backend if backend in WEB_BACKENDS else "onnx"


def model(settings: Settings, name: str | None = None) -> tuple:
    """(backend, manifest) of model `name` (default FB_DEFAULT_MODEL), loaded once per process and weights."""
    manifest = services().catalogue.get(name or settings.default_model)
    key = (os.getpid(), str(manifest.root), manifest.version, web_backend(settings, manifest))
    found = _models.get(key)
    if found is None:
        with _lock:  # gthread workers: two first requests must not load the model twice
            found = _models.get(key)
            if found is None:
                from pipeline.inference.backends import BackendUnavailable, load_backend

                try:
                    # One inference thread: the web server's request threads are the parallelism.
                    backend = load_backend(web_backend(settings, manifest), manifest=manifest, threads=1)
                except BackendUnavailable as exc:
                    raise ApiError(503, f"POST /v1/classify is not available on this server ({exc}); "
                                        "install fashion-batch[classify], or submit a job to /v1/jobs") from None
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
    """Classify the uploaded image with the model's web backend; a bad image or an unknown model is a JSON 400."""
    from pipeline.images.kinds import kind_of_config

    svc = services()
    settings = svc.settings
    chosen = str(request.form.get("model") or settings.default_model).strip()
    if chosen not in svc.catalogue.names:
        raise ApiError(400, f"unknown model {chosen!r}: choose one of {', '.join(svc.catalogue.names)}")
    name, data = _read_upload()
    backend, manifest = model(settings, chosen)
    cfg, max_pixels = manifest.preprocess, settings.limits.max_pixels
    prepare = kind_of_config(cfg).prepare
    (outcome,) = classify_items(
        [0], [ItemSpec(name, "upload")], read=lambda _: data,
        prepare=lambda raw: prepare(raw, cfg, max_pixels=max_pixels), predict=backend.predict,
    )
    if outcome.error is not None:
        raise ApiError(400, f"{name}: {outcome.error}")
    return jsonify(name=name, model=manifest.name, model_version=manifest.version, label=outcome.label,
                   class_name=manifest.classes[outcome.label], confidence=outcome.confidence,
                   probabilities=outcome.probabilities)
