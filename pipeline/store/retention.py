"""Retention: jobs (with their items, results, chunks and callbacks) that ended more than FB_RETENTION_DAYS ago
are purged. A job that has not ended (queued, running, or waiting for its not_before) is never purged."""
from __future__ import annotations

import time
import uuid
from typing import Iterable

from sqlalchemy import Engine, delete, func, select

from pipeline.store.jobs import FINAL
from pipeline.store.schema import jobs


def purge_batch(engine: Engine, days: float, batch: int = 500) -> list[uuid.UUID]:
    """Delete up to `batch` jobs that ended more than `days` ago, in one short transaction; return their ids."""
    cutoff = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, days * 86400)
    with engine.begin() as conn:
        ids = conn.execute(
            select(jobs.c.id).where(jobs.c.status.in_(FINAL), jobs.c.finished_at < cutoff)
            .order_by(jobs.c.finished_at).limit(batch).with_for_update(skip_locked=True)
        ).scalars().all()
        if ids:
            conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))  # items, results, chunks... cascade
    return list(ids)


def purge_jobs(engine: Engine, days: float, batch: int = 500, budget_s: float = 60.0,
               on_purged=None) -> tuple[list[uuid.UUID], bool]:
    """Purge ended jobs past retention, batch after batch, for at most about `budget_s` seconds.

    Returns (the ids purged, whether more are due): the caller runs again at once when more are due, so
    retention keeps pace with any rate of jobs while each run's work stays bounded. `on_purged(ids)` is
    called after each batch (to delete the jobs' uploads).
    """
    purged: list[uuid.UUID] = []
    deadline = time.monotonic() + budget_s
    while True:
        ids = purge_batch(engine, days, batch)
        purged += ids
        if ids and on_purged is not None:
            on_purged(ids)
        if len(ids) < batch:
            return purged, False
        if time.monotonic() >= deadline:
            return purged, True


def statuses(engine: Engine, job_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of these jobs that still exists."""
    ids = list(job_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        return dict(conn.execute(select(jobs.c.id, jobs.c.status).where(jobs.c.id.in_(ids))).all())
