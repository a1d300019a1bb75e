"""Jobs, items and chunks in PostgreSQL: creation, claiming, idempotent results, and completion.

Progress and completion are always derived from the `results` table, never from counters kept elsewhere.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Sequence

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert

from pipeline.items import ItemSpec, Outcome, Span
from pipeline.store.idempotency import Claim
from pipeline.store.idempotency import record as idempotency_record
from pipeline.store.schema import callbacks, chunks, jobs, results

FINAL = ("succeeded", "partial", "failed", "cancelled")
_NO_SPAN = (None,) * 5


@dataclass
class ChunkWork:
    """A claimed chunk: what to classify, with what, and how often it was tried."""

    chunk_id: int
    job_id: uuid.UUID
    backend: str
    pool: str
    attempts: int
    size: int
    items: list[ItemSpec] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)


def plan_chunks(total: int, size: int, first: int) -> list[tuple[int, int]]:
    """Split item positions [0, total) into chunks: a small first one, then `size` each."""
    bounds, start = [], 0
    step = min(first, size)
    while start < total:
        end = min(start + step, total)
        bounds.append((start, end))
        start, step = end, size
    return bounds


def create_job(
    engine: Engine,
    *,
    job_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    backend: str,
    pool: str,
    callback_url: str | None,
    specs: Sequence[ItemSpec],
    chunk_size: int,
    first_chunk_size: int,
    idempotency: Claim | None = None,
    priority: str = "bulk",
    not_before: datetime | None = None,
) -> list[int]:
    """Record a job, its items and its chunks in one transaction; return the chunk ids to enqueue.

    With `idempotency`, the key is recorded in the same transaction (IntegrityError if a twin got there first).
    """
    with engine.begin() as conn:
        conn.execute(
            insert(jobs).values(
                id=job_id, api_key_id=api_key_id, status="queued", backend=backend, pool=pool,
                total=len(specs), callback_url=callback_url, priority=priority, not_before=not_before,
            )
        )
        # COPY, in this transaction: no job can start before it commits, and for 10,000 items COPY takes
        # ~0.09 s where batched INSERTs took ~0.3 s (measured), which is time to the first result.
        with conn.connection.driver_connection.cursor() as cur, \
                cur.copy("copy items (job_id, seq, name, source, member, true_label, data_offset, data_length, "
                         "method, size, crc32) from stdin") as copy:
            for i, s in enumerate(specs):
                span = (s.span.offset, s.span.length, s.span.method, s.span.size, s.span.crc32) if s.span else _NO_SPAN
                copy.write_row((job_id, i, s.name, s.source, s.member, s.true_label, *span))
        if idempotency is not None:
            idempotency_record(conn, api_key_id, idempotency, job_id)
        bounds = plan_chunks(len(specs), chunk_size, first_chunk_size)
        ids = conn.execute(
            insert(chunks).returning(chunks.c.id, sort_by_parameter_order=True),
            [{"job_id": job_id, "pool": pool, "start_seq": a, "end_seq": b, "status": "queued"} for a, b in bounds],
        ).scalars().all()
    return list(ids)


def delete_job(engine: Engine, job_id: uuid.UUID) -> None:
    """Forget a job entirely (used when it could not be enqueued, so the client can simply retry)."""
    with engine.begin() as conn:
        conn.execute(delete(jobs).where(jobs.c.id == job_id))


def span_of(row) -> Span | None:
    """An item row's archive span (where its member's data lies), if the scan recorded one."""
    if row.data_offset is None:
        return None
    return Span(row.data_offset, row.data_length, row.method, row.size, row.crc32)


def bisect_chunk(engine: Engine, work: ChunkWork) -> list[int]:
    """Replace a chunk that keeps failing by two halves of its pending items, so a poison item is cornered in
    a few rounds while the good ones go on; returns the new chunk ids (none if nothing was pending)."""
    with engine.begin() as conn:
        _lock_job(conn, work.job_id)
        conn.execute(update(chunks).where(chunks.c.id == work.chunk_id)
                     .values(status="split", leased_by=None, lease_until=None, updated_at=func.now()))
        if not work.seqs:
            return []
        half = (len(work.seqs) + 1) // 2
        halves = [work.seqs[:half], work.seqs[half:]] if len(work.seqs) > 1 else [work.seqs]
        return list(conn.execute(
            insert(chunks).returning(chunks.c.id, sort_by_parameter_order=True),
            [{"job_id": work.job_id, "pool": work.pool, "start_seq": h[0], "end_seq": h[-1] + 1, "status": "queued"}
             for h in halves if h],
        ).scalars().all())


def write_results(engine: Engine, work: ChunkWork, outcomes: Sequence[Outcome],
                  model_version: str | None = None) -> str | None:
    """Store a chunk's outcomes in one transaction (a redelivered chunk changes nothing), each with the version of
    the weights that gave it (`leases.claim` pins a job to the version of its first lease).

    Returns the job's final status if this write completed the job, else None.
    """
    with engine.begin() as conn:
        if _lock_job(conn, work.job_id) == "cancelled":
            # Cancelled meanwhile: the labels given are kept, but an item the cancel skipped is not "failed".
            outcomes = [o for o in outcomes if o.label is not None]
        if outcomes:
            conn.execute(
                pg_insert(results).on_conflict_do_nothing(index_elements=["job_id", "seq"]),
                [
                    {"job_id": work.job_id, "seq": o.seq, "label": o.label, "confidence": o.confidence,
                     "probabilities": o.probabilities, "error": o.error,
                     "model_version": model_version if o.label is not None else None}
                    for o in outcomes
                ],
            )
        conn.execute(
            update(chunks).where(chunks.c.id == work.chunk_id)
            .values(status="done", finished_at=func.now(), updated_at=func.now(), lease_until=None)
        )
        return finish_if_complete(conn, work.job_id)


def finish_if_complete(conn: Connection, job_id: uuid.UUID) -> str | None:
    """Give the job its final status once every item has a result; return it if set now.

    The job row is locked first, so that of two chunks finishing together the later one sees both writes.
    """
    job = conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).mappings().first()
    if job is None or job["status"] in FINAL:
        return None
    done, failed = _counts(conn, job_id)
    if done + failed < job["total"]:
        return None
    status = "succeeded" if failed == 0 else ("failed" if done == 0 else "partial")
    conn.execute(update(jobs).where(jobs.c.id == job_id).values(
        status=status, finished_at=func.now(), started_at=func.coalesce(jobs.c.started_at, func.now())))
    _record_callback(conn, job, status, done, failed)
    return status


def cancel_job(engine: Engine, job_id: uuid.UUID) -> str | None:
    """Cancel a job: its unfinished chunks are skipped (a running one stops at its next batch), labelled items
    stay, and every item without a result counts as cancelled. A few rows change whatever the job's size, so
    the job's lock is held for milliseconds: no worker waits on it.

    Returns the job's status afterwards, or None if the job does not exist.
    """
    with engine.begin() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update()).mappings().first()
        if job is None:
            return None
        if job["status"] in FINAL:
            return job["status"]
        conn.execute(update(chunks).where(chunks.c.job_id == job_id, chunks.c.status.in_(("queued", "running")))
                     .values(status="cancelled", updated_at=func.now()))
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(status="cancelled", finished_at=func.now()))
        done, failed = _counts(conn, job_id)
        _record_callback(conn, job, "cancelled", done, failed)
    return "cancelled"


def _lock_job(conn: Connection, job_id: uuid.UUID) -> str | None:
    # Every transaction that changes a job's chunks locks the job row first, in this one order, so a
    # cancel (job, then chunks) and a worker (chunk, then job) can never deadlock. Returns its status.
    return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id).with_for_update()).scalar()


def is_cancelled(engine: Engine, job_id: uuid.UUID) -> bool:
    """True once the job has been cancelled (a running chunk asks between batches)."""
    with engine.connect() as conn:
        return conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar() == "cancelled"


def callback_id(engine: Engine, job_id: uuid.UUID) -> int | None:
    """The id of the job's completion callback, if it has one."""
    with engine.connect() as conn:
        return conn.execute(select(callbacks.c.id).where(callbacks.c.job_id == job_id)).scalar()


def _counts(conn: Connection, job_id: uuid.UUID) -> tuple[int, int]:
    row = conn.execute(
        select(func.count(results.c.label), func.count(results.c.error)).where(results.c.job_id == job_id)
    ).one()
    return int(row[0]), int(row[1])


def _record_callback(conn: Connection, job, status: str, done: int, failed: int) -> None:
    if not job["callback_url"]:
        return
    payload = {"id": str(job["id"]), "status": status, "total": job["total"], "done": done, "failed": failed,
               "cancelled": job["total"] - done - failed if status == "cancelled" else 0}
    conn.execute(
        pg_insert(callbacks).values(job_id=job["id"], url=job["callback_url"], status="pending", payload=payload,
                                    next_attempt_at=func.now())
        .on_conflict_do_nothing(index_elements=["job_id"])
    )
