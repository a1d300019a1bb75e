"""pipeline.store.retention and the upload clean-up: old jobs purged, orphaned uploads found."""
from __future__ import annotations

import os
import time
import uuid

from sqlalchemy import func, select, text

from pipeline.blobs import local
from pipeline.items import ItemSpec
from pipeline.store import jobs, retention
from pipeline.store.schema import items
from pipeline.store.schema import jobs as jobs_table


def make_job(engine, age_days: float, cancel: bool = True) -> uuid.UUID:
    job_id = uuid.uuid4()
    jobs.create_job(engine, job_id=job_id, api_key_id=None, backend="onnx", pool="retention-test", callback_url=None,
                    specs=[ItemSpec("a.png", "part-00000")], chunk_size=4, first_chunk_size=4)
    if cancel:
        jobs.cancel_job(engine, job_id)
    with engine.begin() as conn:
        conn.execute(text("update jobs set created_at = now() - make_interval(days => :d), "
                          "finished_at = case when status = 'queued' then null else now() - make_interval(days => :d) "
                          "end where id = :j"), {"d": age_days, "j": job_id})
    return job_id


def test_jobs_past_the_retention_are_purged_with_everything_they_own(engine):
    old, young = make_job(engine, 40), make_job(engine, 2)
    purged, _ = retention.purge_jobs(engine, days=30)
    assert old in purged and young not in purged
    with engine.connect() as conn:
        left = set(conn.execute(select(jobs_table.c.id).where(jobs_table.c.id.in_([old, young]))).scalars())
        orphan_items = conn.execute(select(func.count()).select_from(items).where(items.c.job_id == old)).scalar()
    assert left == {young} and orphan_items == 0


def test_retention_keeps_pace_in_bounded_runs(engine):
    # Given 1,200 jobs that ended 40 days ago (more than two of the 500-job batches)
    with engine.begin() as conn:
        ids = conn.execute(text(
            "insert into jobs (id, status, backend, pool, total, created_at, finished_at) "
            "select gen_random_uuid(), 'succeeded', 'onnx', 'retention-test', 0, now() - interval '41 days', "
            "now() - interval '40 days' from generate_series(1, 1200) returning id")).scalars().all()
    # When one run has a budget too small for all of them / Then it stops after a batch, saying more are due
    first, more = retention.purge_jobs(engine, days=30, batch=500, budget_s=0)
    assert len(first) == 500 and more
    # When the next run has time / Then it purges every one left, and says none is due
    rest, more = retention.purge_jobs(engine, days=30, batch=500)
    assert set(first) | set(rest) >= set(ids) and not more
    assert retention.statuses(engine, ids) == {}


def test_jobs_that_never_ended_are_never_purged(engine):
    # Given a job created 40 days ago that is still queued, and one whose not_before is still ahead
    never_ran, scheduled = make_job(engine, 40, cancel=False), make_job(engine, 40, cancel=False)
    with engine.begin() as conn:
        conn.execute(text("update jobs set finished_at = null, not_before = now() + interval '1 day' where id = :j"),
                     {"j": scheduled})
    # When retention runs / Then both are kept
    purged, _ = retention.purge_jobs(engine, days=30)
    assert never_ran not in purged and scheduled not in purged
    assert set(retention.statuses(engine, [never_ran, scheduled]).values()) == {"queued"}


def test_stale_spool_files_and_job_folders_are_found_fresh_ones_left(tmp_path):
    (tmp_path / "incoming").mkdir()
    old_spool, new_spool = tmp_path / "incoming" / "req-1", tmp_path / "incoming" / "req-2"
    old_spool.write_bytes(b"x")
    new_spool.write_bytes(b"y")
    old_job, new_job = uuid.uuid4(), uuid.uuid4()
    for j in (old_job, new_job):
        local.job_dir(tmp_path, j).mkdir(parents=True)
    hour_ago = time.time() - 7200
    os.utime(old_spool, (hour_ago, hour_ago))
    os.utime(local.job_dir(tmp_path, old_job), (hour_ago, hour_ago))
    spooled, folders = local.stale_entries(tmp_path, older_than_s=3600)
    assert spooled == [old_spool] and list(folders) == [old_job]
    local.remove(spooled + list(folders.values()))
    assert not old_spool.exists() and new_spool.exists() and local.job_dir(tmp_path, new_job).exists()
