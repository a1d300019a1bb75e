"""The benchmarks table: a run is stored once however often it is written; latest per pool and backend."""
from __future__ import annotations

import uuid

from sqlalchemy import func, select

from pipeline.inference.benchmark import BackendTiming
from pipeline.store import benchmarks as benchmark_store
from pipeline.store.schema import benchmarks


def timings(ips: float) -> list[BackendTiming]:
    return [BackendTiming("eager", 64, 3, 10.0, 12.0, ips, 1.0, 0.9),
            BackendTiming("onnx", 64, 3, 5.0, 6.0, 2 * ips, 2.0, 0.9)]


def test_rewriting_a_run_replaces_it(engine):
    # Given a run written once
    run = uuid.uuid4()
    benchmark_store.record(engine, run_id=run, pool="cpu", device="cpu", host="h", timings=timings(100), model="fmnist")
    # When the same run is written again (a redelivered task)
    benchmark_store.record(engine, run_id=run, pool="cpu", device="cpu", host="h", timings=timings(200), model="fmnist")
    # Then it has one row per backend, with the second figures
    with engine.connect() as conn:
        rows = conn.execute(select(benchmarks.c.backend, benchmarks.c.images_per_s)
                            .where(benchmarks.c.run_id == run)).all()
    assert sorted(rows) == [("eager", 200.0), ("onnx", 400.0)]


def test_latest_is_the_newest_row_per_pool_and_backend(engine):
    # Given an older and a newer run on a pool of its own
    pool = f"p{uuid.uuid4().hex[:6]}"
    old, new = uuid.uuid4(), uuid.uuid4()
    benchmark_store.record(engine, run_id=old, pool=pool, device="cpu", host="h", timings=timings(100), model="fmnist")
    benchmark_store.record(engine, run_id=new, pool=pool, device="cpu", host="h", timings=timings(300), model="fmnist")
    with engine.begin() as conn:  # make the order explicit rather than relying on two transactions' clocks
        conn.execute(benchmarks.update().where(benchmarks.c.run_id == old)
                     .values(created_at=func.now() - func.make_interval(0, 0, 0, 0, 1)))
    # When the latest rows and the history are read
    latest = [r for r in benchmark_store.latest(engine) if r["pool"] == pool]
    history = benchmark_store.history(engine, 10, pool=pool)
    # Then latest holds only the newer run, and the history both, newest first
    assert {(r["backend"], r["run_id"]) for r in latest} == {("eager", new), ("onnx", new)}
    assert [r["run_id"] for r in history] == [new, new, old, old]
    assert benchmark_store.history(engine, 10, pool=pool, backend="onnx")[0]["images_per_s"] == 600.0
