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


def make_job(engine, age_days: float) -> uuid.UUID:
    job_id = uuid.uuid4()
    jobs.create_job(engine, job_id=job_id, api_key_id=None, model="fmnist", backend="onnx", pool="retention-test",
                    callback_url=None,
                    specs=[ItemSpec("a.png", "part-00000")], chunk_size=4, first_chunk_size=4)
    jobs.cancel_job(engine, job_id)
    with engine.begin() as conn:
        conn.execute(text("update jobs set created_at = now() - make_interval(days => :d), "
                          "finished_at = now() - make_interval(days => :d) where id = :j"), {"d": age_days, "j": job_id})
    return job_id


def test_jobs_past_the_retention_are_purged_with_everything_they_own(engine):
    old, young = make_job(engine, 40), make_job(engine, 2)
    purged = retention.purge_jobs(engine, days=30)
    assert old in purged and young not in purged
    with engine.connect() as conn:
        left = set(conn.execute(select(jobs_table.c.id).where(jobs_table.c.id.in_([old, young]))).scalars())
        orphan_items = conn.execute(select(func.count()).select_from(items).where(items.c.job_id == old)).scalar()
    assert left == {young} and orphan_items == 0


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
