"""The periodic backend benchmark, run by a real worker process from a real broker message."""
from __future__ import annotations

import uuid

from sqlalchemy import select

from pipeline.broker import create_celery
from pipeline.inference.catalogue import load_catalogue
from pipeline.inference.classify import infer_batch_for
from pipeline.store.schema import benchmarks
from tests.helpers import wait_for
from workers.benchmark_task import TASK_NAME


def test_beat_sends_each_pool_a_task_the_workers_know(settings):
    # Given the Celery app as beat and the workers build it
    app = create_celery(settings)
    app.loader.import_default_modules()
    # Then every benchmark entry names a registered task and goes to its pool's queue
    for pool in ("cpu", "gpu"):
        entry = app.conf.beat_schedule[f"benchmark-{pool}"]
        assert entry["task"] == TASK_NAME and TASK_NAME in app.tasks
        assert entry["args"] == (pool,) and entry["options"]["queue"] == pool


def test_a_benchmark_message_stores_one_run_for_every_backend_of_the_pool(settings, engine, worker):
    # Given a running CPU worker
    app = create_celery(settings)
    # When the beat message for the cpu pool arrives (fewer repetitions, to keep the test short)
    sent = app.send_task(TASK_NAME, args=("cpu",), kwargs={"repetitions": 3, "warmup": 1, "max_sample": 100},
                         queue="cpu")
    run_id = uuid.UUID(sent.id)

    catalogue = load_catalogue(settings.weights_dir)
    expected = len(catalogue.names) * len(settings.cpu_backends)

    def stored():
        with engine.connect() as conn:
            rows = conn.execute(select(benchmarks).where(benchmarks.c.run_id == run_id)).mappings().all()
        return rows if len(rows) >= expected else None

    rows = wait_for(stored, 300, "the benchmark rows of every model")
    # Then each backend the pool serves, of each model, has a row with timings, a speedup against eager and an accuracy
    by_key = {(r["model"], r["backend"]): r for r in rows}
    assert set(by_key) == {(m, b) for m in catalogue.names for b in settings.cpu_backends}
    for r in rows:
        assert r["error"] is None, r["error"]
        assert r["pool"] == "cpu" and r["device"] == "cpu" and r["repetitions"] == 3
        assert r["batch_size"] == infer_batch_for(catalogue.get(r["model"]))
        assert 0 < r["median_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
        if catalogue.get(r["model"]).accuracy:
            assert r["sample_accuracy"] > 0.5  # a trained model; a broken export scores near 0.1
    for model in catalogue.names:
        if (model, "eager") in by_key:
            assert by_key[(model, "eager")]["speedup_vs_eager"] == 1.0
