"""Nothing lost: real worker processes killed, Redis and PostgreSQL restarted, chunks replayed, poison items.

These tests run on a Redis of their own (so restarting it disturbs no other test) with short timeouts, the
ONNX backend only (so a killed pool process is replaced quickly), and a real `celery beat` for the reconciler.
"""
from __future__ import annotations

import os
import random
import signal
import time
import uuid

import pytest
import redis as redis_lib
import requests
from sqlalchemy import select, text

from pipeline.settings import load_settings
from pipeline.store.schema import chunks
from tests.helpers import garment_png, wait_for
from tests.workers.stack import FINAL, poll, row_counts, submit, wait_final

pytestmark = pytest.mark.slow


def test_killing_pool_processes_mid_job_loses_nothing(fault_url, fault_worker, beat, api_key, engine):
    # Given a worker busy with a job of 3,000 images
    worker = fault_worker()
    job = submit(fault_url, api_key, 3000)
    wait_for(lambda: (s := poll(job, api_key)) and s["done"] > 0, 120, "the first results")
    # When its pool processes are SIGKILLed several times while the job runs
    kills = 0
    for _ in range(4):
        status = poll(job, api_key)
        if status and status["status"] not in FINAL:
            os.kill(random.choice(worker.pool_pids()), signal.SIGKILL)
            kills += 1
        time.sleep(1.5)
    # Then the job still finishes with every item labelled, exactly one result row each
    final = wait_final(job, api_key)
    assert kills >= 3, "the job ended before the kills could test anything; make it bigger"
    assert final["status"] == "succeeded" and (final["done"], final["failed"]) == (3000, 0), final
    assert row_counts(engine, job["id"]) == (3000, 3000)
    assert worker.log().count("Worker exited prematurely: signal 9") >= 1
    print(f"SIGKILLs survived: {kills}; items 3000, result rows {row_counts(engine, job['id'])[0]}")


def test_redis_restart_mid_job_loses_nothing(fault_env, fault_url, fault_worker, beat, api_key, engine):
    worker = fault_worker()
    job = submit(fault_url, api_key, 1500)
    wait_for(lambda: (s := poll(job, api_key)) and s["done"] > 0, 120, "the first results")
    assert poll(job, api_key)["status"] == "running"
    # When Redis stops and comes back during the job
    fault_env["redis"].stop()
    time.sleep(2)
    fault_env["redis"].start(detached=True)
    # Then the job finishes with nothing lost and nothing doubled
    final = wait_final(job, api_key)
    assert final["status"] == "succeeded" and final["done"] == 1500, final
    assert row_counts(engine, job["id"]) == (1500, 1500)
    assert "Connection to broker lost" in worker.log()


def test_postgres_restart_mid_job_loses_nothing(servers, fault_url, fault_worker, beat, api_key, engine):
    if servers["pg"] is None:
        pytest.skip("DATABASE_URL points at an external server this test cannot restart")
    worker = fault_worker()
    job = submit(fault_url, api_key, 1500)
    wait_for(lambda: (s := poll(job, api_key)) and s["done"] > 0, 120, "the first results")
    assert poll(job, api_key)["status"] == "running"
    # When PostgreSQL stops (fast shutdown: open transactions are rolled back) and comes back
    servers["pg"].stop()
    time.sleep(2)
    servers["pg"].start()
    # Then the workers retry with backoff and the job finishes with nothing lost
    final = wait_final(job, api_key)
    assert final["status"] == "succeeded" and final["done"] == 1500, final
    assert row_counts(engine, job["id"]) == (1500, 1500)
    assert "OperationalError" in worker.log()


def test_replaying_every_chunk_twice_changes_no_row(fault_env, fault_url, fault_worker, api_key, engine):
    from pipeline.broker import create_celery

    fault_worker()
    producer = create_celery(load_settings(fault_env["env"]))
    job = submit(fault_url, api_key, 500)
    with engine.connect() as conn:
        ids = conn.execute(select(chunks.c.id).where(chunks.c.job_id == uuid.UUID(job["id"]))).scalars().all()

    def replay_all() -> None:
        for _ in range(2):
            for _cid in ids:
                producer.send_task("workers.tasks.drain", args=("cpu",), queue="cpu")

    # Given two extra wake-ups per chunk delivered while the job runs (duplicates of what submit sent)
    replay_all()
    final = wait_final(job, api_key)
    assert final["status"] == "succeeded" and row_counts(engine, job["id"]) == (500, 500)
    with engine.connect() as conn:
        before = conn.execute(text("select seq, label, confidence from results where job_id = :j order by seq"),
                              {"j": job["id"]}).all()
    # When as many wake-ups are replayed again after the job ended
    replay_all()
    client = redis_lib.Redis.from_url(fault_env["env"]["REDIS_URL"])
    wait_for(lambda: client.llen("cpu") == 0 and client.hlen("unacked") == 0, 60, "the replays to drain")
    # Then nothing changed: same rows, same values, same final status
    with engine.connect() as conn:
        after = conn.execute(text("select seq, label, confidence from results where job_id = :j order by seq"),
                             {"j": job["id"]}).all()
    assert after == before and len(after) == 500
    assert poll(job, api_key)["finished_at"] == final["finished_at"]


@pytest.mark.parametrize("mode, error", [("crash", "crashed or stalled the worker on 2 attempts"),
                                         ("hang", "took longer than 2 s; skipped")])
def test_a_poison_item_fails_alone_quickly(mode, error, fault_url, fault_worker, beat, api_key, engine):
    # Given a worker on which one image kills the process that reads it, or stalls it, every time
    fault_worker(**{f"FB_FAULT_{mode.upper()}_ON": "poison-item"})
    # When a job holds it among good images
    started = time.monotonic()
    job = submit(fault_url, api_key, 30, extra={"bad/poison-item.jpg": garment_png(fmt="JPEG")})
    # Then the job ends: the poison item failed with a clear error, everything else labelled. A stall costs
    # FB_ITEM_TIME_LIMIT_S for that image alone; a crash is cornered by bisecting the chunk that holds it.
    final = wait_final(job, api_key, timeout_s=240)
    took = time.monotonic() - started
    assert final["status"] == "partial" and (final["done"], final["failed"]) == (30, 1), final
    items = requests.get(job["results_url"], headers={"X-API-Key": api_key}, timeout=10).json()["items"]
    bad = [i for i in items if i["error"]]
    assert [i["name"] for i in bad] == ["job.zip/bad/poison-item.jpg"]
    assert error in bad[0]["error"]
    assert row_counts(engine, job["id"]) == (31, 31)
    print(f"poison image ({mode}) isolated, job ended in {took:.1f} s")
