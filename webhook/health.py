"""`GET /healthz`: is the database reachable, is the broker reachable (and the object store, with S3 storage)."""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from pipeline.items import SourceUnavailable
from webhook.extensions import services

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when PostgreSQL and Redis (and S3, when uploads go there) answer, 503 (saying which failed) otherwise."""
    checks = {}
    try:
        with services().engine.connect() as conn:
            conn.execute(text("select 1"))
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        services().redis.ping()
        checks["broker"] = "ok"
    except RedisError as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    if services().settings.blob_url.startswith("s3://"):
        try:
            services().store.check()
            checks["storage"] = "ok"
        except SourceUnavailable as exc:
            # The details (an internal endpoint, botocore's words) go to the log, not to whoever asks.
            log.warning("health check: the object store is unavailable: %s", exc)
            checks["storage"] = "unreachable"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", **checks), 200 if healthy else 503
