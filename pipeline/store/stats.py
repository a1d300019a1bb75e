"""Service-wide figures read from PostgreSQL (for /metrics): jobs by status, items by outcome, chunk latency.

Read at scrape time from the tables every process writes, so they are right however many web and worker
processes there are. Each query is one aggregate; the item counts scan `results`, which is fine at the scale of
millions of rows and a 15-60 s scrape interval.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import Connection, Engine, text

LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)

_ITEMS = text("""
select (select count(label) from results) as labelled,
       (select count(error) from results) as failed,
       (select coalesce(sum(total), 0) from jobs where status in ('queued', 'running'))
       - (select count(*) from results r join jobs j on j.id = r.job_id where j.status in ('queued', 'running'))
         as pending,
       (select coalesce(sum(total), 0) from jobs where status = 'cancelled')
       - (select count(*) from results r join jobs j on j.id = r.job_id where j.status = 'cancelled')
         as cancelled
""")
_CHUNKS = text("""
select pool, status, count(*) from chunks where status in ('queued', 'running') group by pool, status
""")
_RECENT = text("""
select pool, percentile_cont(cast(:qs as float8[])) within group (order by extract(epoch from finished_at - started_at))
from chunks where status = 'done' and finished_at > now() - make_interval(secs => :window)
group by pool
""")


@dataclass
class Histogram:
    """Cumulative bucket counts (one per upper bound, then +Inf), and the sum of observations."""

    buckets: list[tuple[float, int]] = field(default_factory=list)
    count: int = 0
    total: float = 0.0


@dataclass
class Snapshot:
    """Everything /metrics reports from the database at one moment."""

    jobs: dict[str, int]
    items: dict[str, int]
    chunks_waiting: dict[tuple[str, str], int]
    chunk_seconds: dict[str, Histogram]
    recent_chunk_quantiles: dict[str, dict[float, float]]


def _histograms(conn: Connection, bounds: Sequence[float]) -> dict[str, Histogram]:
    # One pass over finished chunks: a count per bucket bound, computed by the database.
    cols = ", ".join(f"count(*) filter (where d <= {float(b)!r})" for b in bounds)
    rows = conn.execute(text(
        f"select pool, {cols}, count(*), coalesce(sum(d), 0) from "
        "(select pool, extract(epoch from finished_at - started_at) as d from chunks "
        " where status = 'done' and finished_at is not null and started_at is not null) s group by pool"
    )).all()
    out = {}
    for row in rows:
        counts = [int(c) for c in row[1:1 + len(bounds)]]
        out[row[0]] = Histogram(list(zip(bounds, counts, strict=True)), int(row[-2]), float(row[-1]))
    return out


def snapshot(engine: Engine, *, bounds: Sequence[float] = LATENCY_BUCKETS, quantiles: Sequence[float] = QUANTILES,
             recent_s: float = 300.0) -> Snapshot:
    """Read every figure in one repeatable-read transaction (so they are consistent with each other)."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="REPEATABLE READ")
        jobs = {status: int(n) for status, n in conn.execute(text("select status, count(*) from jobs group by status"))}
        items = dict(conn.execute(_ITEMS).mappings().one())
        waiting = {(pool, status): int(n) for pool, status, n in conn.execute(_CHUNKS)}
        hist = _histograms(conn, bounds)
        recent = {
            pool: dict(zip(quantiles, (float(v) for v in values), strict=True))
            for pool, values in conn.execute(_RECENT, {"qs": list(quantiles), "window": float(recent_s)})
        }
    return Snapshot(jobs=jobs, items={k: int(v) for k, v in items.items()}, chunks_waiting=waiting,
                    chunk_seconds=hist, recent_chunk_quantiles=recent)
