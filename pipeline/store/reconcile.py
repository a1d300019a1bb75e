"""The safety net for lost messages: find chunks and callbacks that PostgreSQL says are still owed."""
from __future__ import annotations

from sqlalchemy import Engine, func, select, text

from pipeline.store.schema import callbacks

# A running chunk untouched for `stale` seconds lost its worker. A queued one is only presumed lost when its
# pool has started or finished nothing for as long (otherwise it is just waiting its turn in a long queue).
_STALE_CHUNKS = text("""
with lost as (
    select c.id from chunks c join jobs j on j.id = c.job_id
    where c.updated_at < now() - make_interval(secs => :stale)
      and j.status in ('queued', 'running')
      and (c.status = 'running' or (c.status = 'queued' and not exists (
            select 1 from chunks r where r.pool = c.pool and r.status in ('running', 'done')
              and r.updated_at > now() - make_interval(secs => :stale))))
    order by c.id limit :limit
    for update of c skip locked
)
update chunks set updated_at = now(), enqueued_at = now() from lost where chunks.id = lost.id
returning chunks.id, chunks.pool
""")


def stale_chunks(engine: Engine, stale_s: float, limit: int = 5000) -> list[tuple[int, str]]:
    """(chunk id, pool) of chunks whose message is presumably lost; they are marked as re-sent now."""
    with engine.begin() as conn:
        rows = conn.execute(_STALE_CHUNKS, {"stale": float(stale_s), "limit": limit}).all()
    return sorted((int(r[0]), r[1]) for r in rows)


def due_callbacks(engine: Engine, limit: int = 100) -> list[int]:
    """Ids of callbacks waiting for a delivery attempt whose time has come."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(callbacks.c.id)
            .where(callbacks.c.status == "pending", callbacks.c.next_attempt_at <= func.now())
            .order_by(callbacks.c.next_attempt_at).limit(limit)
        ).scalars())
