"""Dispatch from PostgreSQL: workers take chunks under a lease, fairly across API keys and jobs.

A Redis message only wakes a worker up ("pool X has work"); which chunk it gets is decided here, so a job
whose messages were never published is still served, and duplicated messages change nothing. A chunk is
handed to at most one live holder ("host:pid"). A holder is live while its lease is: it renews it every third
of FB_LEASE_S, and liveness is judged from that alone, never from a local pid (containers that share a host
name but not a PID namespace would take each other's chunks). An attempt counts when a chunk is first leased
and when a lapsed lease is taken over; a holder resuming its own chunk (after a database error, say) is not a
new attempt.

Fair share: of the claimable chunks of a pool, a worker gets the one whose API key, then whose job, has the
fewest chunks in flight, interactive jobs before bulk ones, then the oldest job first; a chunk whose storage
could not be read comes after every healthy one, so an outage never starves the jobs that can run. A one-image job that
arrives behind a million-image one is served by the next worker to finish a chunk.
"""
from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Connection, Engine, and_, func, select, text, update

from pipeline.items import ItemSpec
from pipeline.store.jobs import FINAL, ChunkWork, span_of
from pipeline.store.schema import chunks, items, jobs, results

_HOST = socket.gethostname()

# Chunks a holder may take: queued ones, running ones whose lease lapsed, and its own. Jobs that ended, or
# whose not_before is still ahead, give none.
_CLAIMABLE = """
    ((c.status = 'queued' and (c.lease_until is null or c.lease_until < now()))
     or (c.status = 'running' and (c.lease_until is null or c.lease_until < now() or c.leased_by = :holder)))
    and j.status in ('queued', 'running') and (j.not_before is null or j.not_before <= now())
"""

_CANDIDATES = text(f"""
with live as (
    select job_id, count(*) as n from chunks
    where pool = :pool and status = 'running' and lease_until >= now() and leased_by <> :holder
    group by job_id
), per_key as (
    select j.api_key_id, sum(l.n) as n from live l join jobs j on j.id = l.job_id group by j.api_key_id
)
select c.id from chunks c
join jobs j on j.id = c.job_id
left join live l on l.job_id = c.job_id
left join per_key k on k.api_key_id is not distinct from j.api_key_id
where c.pool = :pool and {_CLAIMABLE}
  and (cast(:version as text) is null or j.model_version is null or j.model_version = cast(:version as text))
order by (c.leased_by is not distinct from :holder) desc,
         (c.unavailable_since is not null) asc,  -- chunks whose storage was unreadable wait behind healthy work
         (j.priority = 'interactive') desc,
         coalesce(k.n, 0), coalesce(l.n, 0), j.created_at, c.start_seq
limit :limit
""")

_CLAIMABLE_COUNTS = text(f"""
select c.pool, count(*) from chunks c join jobs j on j.id = c.job_id
where {_CLAIMABLE.replace(":holder", "''")} group by c.pool
""")


def holder_id() -> str:
    """This process's name as a lease holder."""
    return f"{_HOST}:{os.getpid()}"


def lease_next(engine: Engine, pool: str, holder: str, lease_s: float,
               model_version: str | None = None) -> ChunkWork | None:
    """Lease the next chunk of `pool` for `holder` (fair order); None when nothing is claimable now.

    With `model_version`, jobs pinned to other weights are left to workers that have them.
    """
    params = {"pool": pool, "holder": holder, "limit": 32, "version": model_version}
    with engine.connect() as conn:
        candidates = conn.execute(_CANDIDATES, params).scalars().all()
    for chunk_id in candidates:
        work = claim(engine, chunk_id, holder, lease_s, model_version)
        if work is not None:
            return work
    return None


def claim(engine: Engine, chunk_id: int, holder: str, lease_s: float,
          model_version: str | None = None) -> ChunkWork | None:
    """Lease chunk `chunk_id` to `holder` if it is claimable (and, given `model_version`, not pinned to other
    weights); return its items that still lack a result."""
    with engine.begin() as conn:
        job_id = conn.execute(select(chunks.c.job_id).where(chunks.c.id == chunk_id)).scalar()
        if job_id is None:
            return None
        conn.execute(select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())  # job before chunk
        row = conn.execute(
            select(chunks, jobs.c.backend, jobs.c.pool.label("job_pool"), jobs.c.status.label("job_status"),
                   jobs.c.not_before, jobs.c.model_version, func.now().label("now"))
            .join(jobs, jobs.c.id == chunks.c.job_id).where(chunks.c.id == chunk_id)
            .with_for_update(of=chunks, skip_locked=True)
        ).mappings().first()
        if row is None or row["job_status"] in FINAL or row["status"] not in ("queued", "running"):
            return None
        if row["not_before"] is not None and row["not_before"] > row["now"]:
            return None
        if model_version and row["model_version"] not in (None, model_version):
            return None  # pinned to other weights: a worker that has them takes it
        if row["status"] == "queued" and row["lease_until"] is not None and row["lease_until"] > row["now"]:
            return None  # deferred (its storage could not be read): not yet
        mine = row["leased_by"] == holder
        if row["status"] == "running" and not mine:
            if row["lease_until"] is not None and row["lease_until"] >= row["now"]:
                return None  # its holder renews it: live, wherever it runs
        attempts = row["attempts"] if mine and row["status"] == "running" else row["attempts"] + 1
        conn.execute(update(chunks).where(chunks.c.id == chunk_id).values(
            status="running", attempts=attempts, leased_by=holder, started_at=func.now(), updated_at=func.now(),
            lease_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s)))
        conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.status == "queued")
                     .values(status="running", started_at=func.now()))
        if model_version and row["model_version"] is None:
            # The job's first lease pins it to these weights (the job row is locked: no other worker races us).
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(model_version=model_version))
        pending = _pending(conn, job_id, row["start_seq"], row["end_seq"])
    return ChunkWork(chunk_id=chunk_id, job_id=job_id, backend=row["backend"], pool=row["job_pool"],
                     attempts=attempts, size=row["end_seq"] - row["start_seq"],
                     items=[ItemSpec(r.name, r.source, r.member, r.true_label, span_of(r)) for r in pending],
                     seqs=[r.seq for r in pending])


def _pending(conn: Connection, job_id: uuid.UUID, start: int, end: int) -> list:
    return conn.execute(
        select(items.c.seq, items.c.name, items.c.source, items.c.member, items.c.true_label, items.c.data_offset,
               items.c.data_length, items.c.method, items.c.size, items.c.crc32)
        .outerjoin(results, and_(results.c.job_id == items.c.job_id, results.c.seq == items.c.seq))
        .where(items.c.job_id == job_id, items.c.seq >= start, items.c.seq < end, results.c.seq.is_(None))
        .order_by(items.c.seq)
    ).all()


def renew(engine: Engine, chunk_id: int, holder: str, lease_s: float) -> bool:
    """Extend `holder`'s lease on a chunk it is working on; False if the lease is no longer its own."""
    with engine.begin() as conn:
        n = conn.execute(update(chunks).where(chunks.c.id == chunk_id, chunks.c.leased_by == holder,
                                              chunks.c.status == "running")
                         .values(lease_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, lease_s))).rowcount
    return bool(n)


def defer(engine: Engine, chunk_id: int, holder: str, seconds: float) -> None:
    """Give a chunk back for `seconds` (its uploads cannot be read now); this lease is not counted an attempt."""
    with engine.begin() as conn:
        conn.execute(update(chunks).where(chunks.c.id == chunk_id, chunks.c.leased_by == holder,
                                          chunks.c.status == "running").values(
            status="queued", leased_by=None, attempts=chunks.c.attempts - 1, updated_at=func.now(),
            lease_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, seconds)))


def unavailable_for(engine: Engine, chunk_id: int) -> float:
    """Seconds since the chunk's storage was first found unreadable (0.0 the first time, which starts the clock)."""
    with engine.begin() as conn:
        return float(conn.execute(
            update(chunks).where(chunks.c.id == chunk_id)
            .values(unavailable_since=func.coalesce(chunks.c.unavailable_since, func.now()))
            .returning(func.extract("epoch", func.now() - chunks.c.unavailable_since))
        ).scalar() or 0.0)


def claimable_counts(engine: Engine) -> dict[str, int]:
    """How many chunks each pool could hand out now (queued, or running under a lapsed lease)."""
    with engine.connect() as conn:
        return {pool: int(n) for pool, n in conn.execute(_CLAIMABLE_COUNTS).all()}


def queued_behind(engine: Engine, job: dict) -> int:
    """About how many chunks are served before this job's first: every claimable chunk of a higher-priority
    job, and one turn for each older job of its priority that has none in flight yet (the fair order)."""
    claimable = _CLAIMABLE.replace(":holder", "''")
    with engine.connect() as conn:
        return int(conn.execute(text(f"""
            with waiting as (
                select c.job_id, j.priority, j.created_at, count(*) as n from chunks c join jobs j on j.id = c.job_id
                where c.pool = :pool and j.id <> :job and {claimable}
                group by c.job_id, j.priority, j.created_at
            ), busy as (
                select distinct job_id from chunks
                where pool = :pool and status = 'running' and lease_until >= now()
            )
            select coalesce(sum(case when w.priority = 'interactive' and :priority = 'bulk' then w.n
                                     when w.priority = :priority and w.created_at < :created
                                          and w.job_id not in (select job_id from busy) then 1
                                     else 0 end), 0)
            from waiting w
        """), {"pool": job["pool"], "job": job["id"], "priority": job["priority"],
               "created": job["created_at"]}).scalar())
