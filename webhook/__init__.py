"""The Flask ingest and status service: `create_app()` builds it; nothing happens at import."""
from __future__ import annotations

from flask import Flask, request

from pipeline.settings import Settings, load_settings, require


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app from `settings` (read from the environment when not given)."""
    from webhook import (
        api,
        benchmarks,
        classify,
        errors,
        health,
        metrics,
        openapi,
        pages,
    )
    from webhook.extensions import Services
    from webhook.uploads import SpoolingRequest, discard_spooled

    settings = settings or load_settings()
    require(settings, "web")
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set (the local launcher `fashion-batch up` sets them)")
    app = Flask(__name__)
    app.request_class = SpoolingRequest
    app.config.update(
        MAX_CONTENT_LENGTH=settings.limits.max_upload_bytes,
        MAX_FORM_PARTS=settings.limits.max_parts + 20,  # the file parts plus a few form fields
        # Bounds what the multipart parser keeps in memory (form fields, its read buffer); files go to disk.
        MAX_FORM_MEMORY_SIZE=1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    app.extensions["fashion_batch"] = Services(settings)
    if settings.blob_url.startswith("s3://"):
        from pipeline.blobs.s3 import client

        client(settings)  # refuse to start without boto3 (the s3 extra), rather than answer 500 to every upload
    settings.storage_dir.mkdir(parents=True, exist_ok=True)
    errors.register(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(classify.bp)
    app.register_blueprint(benchmarks.bp)
    app.register_blueprint(openapi.bp)
    metrics.init_app(app)

    @app.teardown_request
    def _discard(exc: BaseException | None) -> None:
        discard_spooled(request)

    return app
