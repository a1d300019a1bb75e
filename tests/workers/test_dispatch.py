"""Dispatch from PostgreSQL: a job whose wake-ups were never sent still runs; a small job is not starved.

Real processes (fixtures in tests/workers/conftest.py): a worker, beat, the web app over HTTP.
"""
from __future__ import annotations

import os
import time
import uuid
import zipfile

import pytest
import requests

from pipeline.blobs.local import job_dir
from pipeline.images.ingest import Part, list_items
from pipeline.settings import load_settings
from pipeline.store import jobs
from tests.helpers import garment_png, wait_for
from tests.workers.stack import poll, submit, wait_final

pytestmark = pytest.mark.slow


def _write_zip(target, n: int) -> None:
    with zipfile.ZipFile(target, "w") as zf:
        for i in range(n):
            zf.writestr(f"img/{i:03d}.jpg", garment_png("shirt", (90, 110), fmt="JPEG"))


def spooled_zip(settings, n: int, name: str):
    """A ZIP of `n` photos spooled in a new job's folder, and its items, as POST /v1/jobs leaves them."""
    job_id = uuid.uuid4()
    folder = job_dir(settings.storage_dir, job_id)
    folder.mkdir(parents=True)
    _write_zip(folder / "part-00000", n)
    return job_id, folder, list_items([Part(folder / "part-00000", name)], settings.limits)


def record(engine, settings, job_id, specs) -> None:
    """Commit the job, its items and chunks, and announce nothing (what a web process that died leaves)."""
    jobs.create_job(engine, job_id=job_id, api_key_id=None, model="fmnist", backend="onnx", pool="cpu",
                    callback_url=None,
                    specs=specs, chunk_size=settings.chunk_size, first_chunk_size=settings.first_chunk_size)


def test_a_job_committed_but_never_announced_runs_within_seconds(fault_env, fault_worker, beat, api_key, engine):
    # Given a job recorded in PostgreSQL exactly as POST /v1/jobs leaves it when its process dies between the
    # commit and the publish: job, items and chunks committed, no message on the queue
    fault_worker()
    settings = load_settings(fault_env["env"])
    job_id, folder, specs = spooled_zip(settings, 120, "stranded.zip")
    started = time.monotonic()
    record(engine, settings, job_id, specs)
    # When nothing else happens / Then beat's dispatch wakes a worker and the job completes, every item labelled
    from pipeline.store.reports import job_status

    final = wait_for(lambda: (j := job_status(engine, job_id, None))["status"] in jobs.FINAL and j, 60,
                     "the stranded job to finish")
    took = time.monotonic() - started
    assert final["status"] == "succeeded" and final["done"] == 120, final
    print(f"\nstranded job of 120 images completed {took:.1f} s after its commit (dispatch every "
          f"{settings.dispatch_every_s:g} s)")


def test_a_one_image_job_is_served_while_a_big_job_runs(fault_url, fault_worker, beat, api_key):
    # Given a worker busy with a big job (FB_TEST_BIG_JOB images; 3,000 by default)
    fault_worker()
    big_n = int(os.environ.get("FB_TEST_BIG_JOB", "3000"))
    big = submit(fault_url, api_key, big_n)
    wait_for(lambda: (s := poll(big, api_key)) and s["done"] > 0, 120, "the big job to start")
    time.sleep(2)
    # When a one-image job arrives
    sent = time.monotonic()
    resp = requests.post(f"{fault_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                         files=[("files", ("one.jpg", garment_png("trouser", fmt="JPEG"), "image/jpeg"))])
    small = resp.json()
    assert small["priority"] == "interactive"  # small jobs are interactive unless they say otherwise
    done = wait_final(small, api_key, timeout_s=120)
    waited = time.monotonic() - sent
    # Then it is labelled while the big job is still running: it waited for a free worker, not for the big job
    big_now = poll(big, api_key)
    assert done["status"] == "succeeded"
    assert big_now["status"] == "running" and big_now["done"] < big_n, big_now
    print(f"\none-image job answered in {waited:.2f} s behind a {big_n:,}-image job "
          f"({big_now['done']:,} of it done by then)")
    requests.delete(big["status_url"], headers={"X-API-Key": api_key}, timeout=30)


def test_priority_and_not_before_are_honoured_and_shown(fault_url, api_key):
    # Given a job that must not start before tomorrow, and a bad time
    later = "2099-01-01T22:00:00Z"
    resp = requests.post(f"{fault_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                         data={"not_before": later, "priority": "bulk"},
                         files=[("files", ("a.png", garment_png(), "image/png"))])
    job = resp.json()
    assert resp.status_code == 202 and job["priority"] == "bulk" and job["not_before"].startswith("2099-01-01T22:00")
    time.sleep(3)  # a worker and beat are up: nothing may take it
    status = poll(job, api_key)
    assert status["status"] == "queued" and status["done"] == 0
    requests.delete(job["status_url"], headers={"X-API-Key": api_key}, timeout=30)
    bad = requests.post(f"{fault_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                        data={"not_before": "tomorrow"}, files=[("files", ("a.png", garment_png(), "image/png"))])
    assert bad.status_code == 400 and "ISO 8601" in bad.json()["error"]


def test_an_unreadable_storage_is_waited_out_not_blamed_on_the_images(fault_env, fault_worker, beat, engine):
    # Given a job whose uploads vanish (a storage mount gone) just as it is recorded
    fault_worker()
    settings = load_settings(fault_env["env"])
    job_id, folder, specs = spooled_zip(settings, 40, "mount.zip")
    away = folder.with_name(folder.name + ".away")
    folder.rename(away)
    record(engine, settings, job_id, specs)
    # When the worker has tried for a while, and the storage comes back
    from pipeline.store.reports import job_status

    time.sleep(5)
    assert job_status(engine, job_id, None)["failed"] == 0  # nothing was failed while it was gone
    away.rename(folder)
    # Then the job completes with every image labelled
    final = wait_for(lambda: (j := job_status(engine, job_id, None))["status"] in jobs.FINAL and j, 90,
                     "the job to finish once its storage is back")
    assert final["status"] == "succeeded" and (final["done"], final["failed"]) == (40, 0), final


def test_housekeeping_purges_old_jobs_and_orphaned_uploads(fault_env, fault_worker, engine):
    from pipeline.broker import create_celery
    from pipeline.store.reports import job_status
    from tests.pipeline.store.test_retention import make_job

    # Given a job past the retention, with its folder, and an orphaned spool file an hour old
    fault_worker()
    settings = load_settings(fault_env["env"])
    old = make_job(engine, 45)
    job_dir(settings.storage_dir, old).mkdir(parents=True)
    spool = settings.storage_dir / "incoming" / "crashed-request"
    spool.parent.mkdir(parents=True, exist_ok=True)
    spool.write_bytes(b"half an upload")
    os.utime(spool, (time.time() - 7200,) * 2)
    # When the periodic housekeeping task runs on a real worker
    create_celery(settings).send_task("workers.tasks.housekeeping", queue="control")
    # Then the old job and its folder are gone, and so is the orphan
    wait_for(lambda: job_status(engine, old, None) is None and not spool.exists()
             and not job_dir(settings.storage_dir, old).exists(), 30, "housekeeping")


def test_a_pool_nobody_serves_never_piles_up_wake_ups(fault_env, fault_url, beat, api_key):
    import redis

    # Given jobs queued (the setting allows it) for a pool no worker serves, and beat dispatching every second
    client = redis.Redis.from_url(fault_env["env"]["REDIS_URL"])
    queued = [requests.post(f"{fault_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                            data={"pool": "gpu", "backend": "onnx"},
                            files=[("files", ("a.zip", _zip_of(60), "application/zip"))]).json() for _ in range(3)]
    # When beat has had many rounds / Then the pool's queue holds at most FB_WAKEUPS wake-ups, not one per round
    time.sleep(6)
    waiting = client.llen("gpu")
    assert 1 <= waiting <= load_settings(fault_env["env"]).wakeups, waiting
    for job in queued:
        requests.delete(job["status_url"], headers={"X-API-Key": api_key}, timeout=30)


def _zip_of(n: int) -> bytes:
    import io

    buf = io.BytesIO()
    _write_zip(buf, n)
    return buf.getvalue()
