"""`GET /healthz`: is the database reachable, is the broker reachable."""
from __future__ import annotations

from flask import Blueprint, jsonify
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webhook.extensions import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when PostgreSQL and Redis answer, 503 (saying which failed) otherwise."""
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
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", **checks), 200 if healthy else 503
