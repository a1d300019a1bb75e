"""The `benchmarks` table: record one run's timings, read the latest per pool, model and backend, and the history."""
from __future__ import annotations

import uuid
from typing import Sequence

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.dialects.postgresql import distinct_on

from pipeline.inference.benchmark import BackendTiming
from pipeline.store.schema import benchmarks

_COLUMNS = (benchmarks.c.run_id, benchmarks.c.pool, benchmarks.c.model, benchmarks.c.backend, benchmarks.c.device, benchmarks.c.host,
            benchmarks.c.batch_size, benchmarks.c.repetitions, benchmarks.c.median_ms, benchmarks.c.p99_ms,
            benchmarks.c.images_per_s, benchmarks.c.speedup_vs_eager, benchmarks.c.sample_accuracy,
            benchmarks.c.error, benchmarks.c.created_at)


def record(engine: Engine, *, run_id: uuid.UUID, pool: str, device: str, host: str,
           timings: Sequence[BackendTiming], model: str) -> None:
    """Store one model's timings of a run (replacing any earlier rows of the same run and model, so a redelivered
    task adds nothing)."""
    rows = [{"run_id": run_id, "pool": pool, "model": model, "device": device, "host": host, **t.to_dict()}
            for t in timings]
    with engine.begin() as conn:
        conn.execute(delete(benchmarks).where(benchmarks.c.run_id == run_id, benchmarks.c.model == model))
        if rows:
            conn.execute(insert(benchmarks), rows)


def latest(engine: Engine) -> list[dict]:
    """The most recent row for each (pool, model, backend)."""
    key = (benchmarks.c.pool, benchmarks.c.model, benchmarks.c.backend)
    query = (select(*_COLUMNS).ext(distinct_on(*key))
             .order_by(*key, benchmarks.c.created_at.desc(), benchmarks.c.id.desc()))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def history(engine: Engine, limit: int = 200, pool: str | None = None, backend: str | None = None) -> list[dict]:
    """Up to `limit` rows, newest first, optionally for one pool and/or backend."""
    query = select(*_COLUMNS).order_by(benchmarks.c.created_at.desc(), benchmarks.c.id.desc()).limit(limit)
    if pool:
        query = query.where(benchmarks.c.pool == pool)
    if backend:
        query = query.where(benchmarks.c.backend == backend)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]
