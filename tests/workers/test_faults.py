"""Nothing lost: real worker processes killed, Redis and PostgreSQL restarted, chunks replayed, poison items.

These tests run on a Redis of their own (so restarting it disturbs no other test) with short timeouts, the
ONNX backend only (so a killed pool process is replaced quickly), and a real `celery beat` for the reconciler.
"""
from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import time
import uuid
import zipfile

import pytest
import redis as redis_lib
import requests
from sqlalchemy import func, select, text

from pipeline.settings import load_settings
from pipeline.store.schema import chunks, results
from pipeline.tools.services import EmbeddedRedis
from tests.conftest import serve
from tests.helpers import ROOT, WorkerProcess, garment_png, wait_for

pytestmark = pytest.mark.slow
FINAL = ("succeeded", "partial", "failed", "cancelled")


@pytest.fixture(scope="module")
def fault_env(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    redis = EmbeddedRedis(root / "redis")
    fenv = {
        **env,
        "REDIS_URL": redis.start(detached=True),
        "FB_DATA_DIR": str(root),
        "FB_STORAGE_DIR": str(root / "storage"),
        "FB_CPU_BACKENDS": "onnx",
        "FB_DEFAULT_BACKEND": "onnx",
        "FB_CHUNK_SIZE": "50",
        "FB_FIRST_CHUNK_SIZE": "10",
        "FB_TASK_TIME_LIMIT_S": "20",
        "FB_VISIBILITY_TIMEOUT_S": "30",
        "FB_STALE_CHUNK_S": "8",
        "FB_RECONCILE_EVERY_S": "2",
        "FB_MAX_CHUNK_ATTEMPTS": "2",
    }
    yield {"env": fenv, "redis": redis}
    redis.stop()


@pytest.fixture(scope="module")
def fault_url(fault_env):
    from webhook import create_app

    yield from serve(create_app(load_settings(fault_env["env"])))


@pytest.fixture(scope="module")
def beat(fault_env):
    proc = start_beat(fault_env["env"], "beat")
    yield proc
    proc.terminate()
    proc.wait(30)


def start_beat(env: dict, name: str) -> subprocess.Popen:
    log = open(os.path.join(env["FB_DATA_DIR"], f"{name}.log"), "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
         "-s", os.path.join(env["FB_DATA_DIR"], f"{name}-schedule")],
        env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture()
def fault_worker(fault_env):
    started: list[WorkerProcess] = []

    def start(**overrides: str) -> WorkerProcess:
        w = WorkerProcess({**fault_env["env"], **overrides}, concurrency=2, name="fault")
        w.start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop()


def submit(url: str, key: str, n: int, extra: dict[str, bytes] | None = None) -> dict:
    """A job of `n` small JPEGs (plus `extra` members) in one ZIP."""
    img = garment_png("shirt", (90, 110), fmt="JPEG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        for i in range(n):
            zf.writestr(f"img/{i:05d}.jpg", img)
    resp = requests.post(f"{url}/v1/jobs", headers={"X-API-Key": key}, timeout=120,
                         files=[("files", ("job.zip", buf.getvalue(), "application/zip"))])
    assert resp.status_code == 202, resp.text
    return resp.json()


def poll(job: dict, key: str) -> dict | None:
    try:
        return requests.get(job["status_url"], headers={"X-API-Key": key}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return None  # the database may be restarting


def wait_final(job: dict, key: str, timeout_s: float = 300) -> dict:
    return wait_for(lambda: (s := poll(job, key)) and s["status"] in FINAL and s, timeout_s, "the job to end", 0.5)


def row_counts(engine, job_id: str) -> tuple[int, int]:
    with engine.connect() as conn:
        return conn.execute(select(func.count(), func.count(func.distinct(results.c.seq)))
                            .where(results.c.job_id == uuid.UUID(job_id))).one()


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
            for cid in ids:
                producer.send_task("workers.tasks.classify_chunk", args=(cid,), queue="cpu")

    # Given every chunk delivered three times while the job runs (the original and two replays)
    replay_all()
    final = wait_final(job, api_key)
    assert final["status"] == "succeeded" and row_counts(engine, job["id"]) == (500, 500)
    with engine.connect() as conn:
        before = conn.execute(text("select seq, label, confidence from results where job_id = :j order by seq"),
                              {"j": job["id"]}).all()
    # When every chunk is replayed twice more after the job ended
    replay_all()
    client = redis_lib.Redis.from_url(fault_env["env"]["REDIS_URL"])
    wait_for(lambda: client.llen("cpu") == 0 and client.hlen("unacked") == 0, 60, "the replays to drain")
    # Then nothing changed: same rows, same values, same final status
    with engine.connect() as conn:
        after = conn.execute(text("select seq, label, confidence from results where job_id = :j order by seq"),
                             {"j": job["id"]}).all()
    assert after == before and len(after) == 500
    assert poll(job, api_key)["finished_at"] == final["finished_at"]


@pytest.mark.parametrize("mode", ["crash", "hang"])
def test_a_poison_item_fails_alone_after_bounded_retries(mode, fault_url, fault_worker, beat, api_key, engine):
    # Given a worker on which one image kills (or hangs) the process that decodes it, every time
    overrides = {f"FB_FAULT_{mode.upper()}_ON": "poison-item"}
    if mode == "hang":
        overrides.update(FB_TASK_TIME_LIMIT_S="4", FB_VISIBILITY_TIMEOUT_S="10")
    fault_worker(**overrides)
    # When a job holds it among good images
    job = submit(fault_url, api_key, 30, extra={"bad/poison-item.jpg": garment_png(fmt="JPEG")})
    # Then the job ends: the poison item failed with a clear error, everything else labelled
    final = wait_final(job, api_key, timeout_s=240)
    assert final["status"] == "partial" and (final["done"], final["failed"]) == (30, 1), final
    items = requests.get(job["results_url"], headers={"X-API-Key": api_key}, timeout=10).json()["items"]
    bad = [i for i in items if i["error"]]
    assert [i["name"] for i in bad] == ["job.zip/bad/poison-item.jpg"]
    assert "crashed or stalled the worker" in bad[0]["error"]
    assert row_counts(engine, job["id"]) == (31, 31)


def test_a_second_beat_refuses_to_run(fault_env, beat):
    # Given the module's beat holding the lock, When another beat starts on the same broker, Then it exits
    wait_for(lambda: beat.poll() is None and os.path.getsize(os.path.join(fault_env["env"]["FB_DATA_DIR"],
                                                                          "beat.log")) > 0, 30, "beat to start")
    second = start_beat(fault_env["env"], "beat2")
    try:
        assert second.wait(60) == 78
    finally:
        if second.poll() is None:
            second.kill()
