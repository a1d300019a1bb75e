"""Retention: jobs (with their items, results, chunks and callbacks) older than FB_RETENTION_DAYS are purged."""
from __future__ import annotations

import uuid
from typing import Iterable

from sqlalchemy import Engine, delete, func, or_, select

from pipeline.store.jobs import FINAL
from pipeline.store.schema import jobs


def purge_jobs(engine: Engine, days: float, batch: int = 500) -> list[uuid.UUID]:
    """Delete ended jobs finished, and any job created, more than `days` ago; return their ids."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, days * 86400)
    with engine.begin() as conn:
        ids = conn.execute(
            select(jobs.c.id).where(or_(jobs.c.created_at < cutoff,
                                        jobs.c.status.in_(FINAL) & (jobs.c.finished_at < cutoff)))
            .limit(batch).with_for_update(skip_locked=True)
        ).scalars().all()
        if ids:
            conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))  # items, results, chunks... cascade
    return list(ids)


def statuses(engine: Engine, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of these jobs that still exists."""
    ids = list(job_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids))).all())
