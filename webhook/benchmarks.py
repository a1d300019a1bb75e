"""`GET /v1/benchmarks`: the periodic backend benchmarks, latest per pool and backend plus the history."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from pipeline.store import benchmarks as benchmark_store
from webhook import auth
from webhook.errors import ApiError
from webhook.extensions import services

bp = Blueprint("benchmarks", __name__, url_prefix="/v1")
bp.before_request(auth.require_key)
MAX_HISTORY = 5000


def row_json(row: dict) -> dict:
    """A benchmark row as JSON (ids and times as strings)."""
    return {**row, "run_id": str(row["run_id"]), "created_at": row["created_at"].isoformat()}


@bp.get("/benchmarks")
def list_benchmarks():
    """`latest`: the newest row per (pool, backend); `history`: newest first (`limit`, `pool`, `backend`)."""
    try:
        limit = min(MAX_HISTORY, max(1, int(request.args.get("limit", 200))))
    except ValueError:
        raise ApiError(400, "limit must be an integer") from None
    pool, backend = request.args.get("pool"), request.args.get("backend")
    for name, value in (("pool", pool), ("backend", backend)):
        if value is not None and (not value.isprintable() or len(value) > 100):
            raise ApiError(400, f"{name} must be a short printable name")
    engine = services().engine
    history = benchmark_store.history(engine, limit, pool=pool, backend=backend)
    return jsonify(latest=[row_json(r) for r in benchmark_store.latest(engine)],
                   history=[row_json(r) for r in history])
