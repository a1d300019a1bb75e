"""Jobs in PostgreSQL: chunk planning, idempotent results, completion, cancel, bisecting."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select, text, update

from pipeline.items import ItemSpec, Outcome
from pipeline.store import jobs, leases, reports
from pipeline.store.schema import callbacks, chunks, results
from pipeline.store.schema import jobs as jobs_table


def new_job(engine, n: int, chunk_size: int = 4, first: int = 2, callback_url: str | None = None):
    job_id = uuid.uuid4()
    ids = jobs.create_job(engine, job_id=job_id, api_key_id=None, backend="onnx", pool="store-test",  # no worker
                          callback_url=callback_url, specs=[ItemSpec(f"{i}.png", "part-00000") for i in range(n)],
                          chunk_size=chunk_size, first_chunk_size=first)
    return job_id, ids


def claim(engine, chunk_id, holder: str = "test:1"):
    return leases.claim(engine, chunk_id, holder, 60)


def labelled(work):
    return [Outcome(s, label=1, confidence=0.9, probabilities=[0.1] * 10) for s in work.seqs]


def result_count(engine, job_id) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(results).where(results.c.job_id == job_id)).scalar()


def status(engine, job_id) -> str:
    with engine.connect() as conn:
        return conn.execute(select(jobs_table.c.status).where(jobs_table.c.id == job_id)).scalar()


def test_plan_chunks_starts_small_then_uses_the_chunk_size():
    assert jobs.plan_chunks(10, 4, 2) == [(0, 2), (2, 6), (6, 10)]
    assert jobs.plan_chunks(3, 256, 32) == [(0, 3)]
    assert jobs.plan_chunks(0, 4, 2) == []


def test_a_redelivered_chunk_changes_nothing(engine):
    # Given a job whose first chunk was processed and written
    job_id, ids = new_job(engine, 6)
    work = claim(engine, ids[0])
    jobs.write_results(engine, work, labelled(work))
    # When the same chunk is delivered again
    again = claim(engine, ids[0])
    # Then there is nothing to do, and writing the old outcomes again adds no row
    assert again is None
    jobs.write_results(engine, work, labelled(work))
    assert result_count(engine, job_id) == 2


def test_a_chunk_restarted_midway_only_gets_its_missing_items(engine):
    job_id, ids = new_job(engine, 6)
    work = claim(engine, ids[1])
    jobs.write_results(engine, work, labelled(work)[:2])  # as if the worker died after half of it
    with engine.begin() as conn:  # ...and its lease lapsed
        conn.execute(update(chunks).where(chunks.c.id == ids[1])
                     .values(status="running", lease_until=func.now() - text("interval '1 second'")))
    retry = claim(engine, ids[1], "other:2")
    assert retry.attempts == 2 and retry.seqs == work.seqs[2:]


def test_job_ends_once_with_the_right_status_when_chunks_finish_together(engine):
    for _ in range(5):
        # Given a job of many chunks, claimed at once
        job_id, ids = new_job(engine, 16, chunk_size=2, first=2, callback_url="http://example.com/hook")
        works = [claim(engine, i) for i in ids]
        finals: list[str | None] = []
        # When every chunk writes its results concurrently, one with a failed item
        def write(w):
            outcomes = labelled(w)
            if w.seqs[0] == 0:
                outcomes[0] = Outcome(0, error="corrupt")
            finals.append(jobs.write_results(engine, w, outcomes))
        threads = [threading.Thread(target=write, args=(w,)) for w in works]
        [t.start() for t in threads]
        [t.join() for t in threads]
        # Then exactly one write completed the job, as partial, and one callback is recorded
        assert [f for f in finals if f] == ["partial"]
        assert status(engine, job_id) == "partial"
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(callbacks)
                                .where(callbacks.c.job_id == job_id)).scalar() == 1


def test_cancel_keeps_labelled_items_and_counts_the_rest_cancelled_not_failed(engine):
    job_id, ids = new_job(engine, 6)
    work = claim(engine, ids[0])
    jobs.write_results(engine, work, labelled(work))
    assert jobs.cancel_job(engine, job_id) == "cancelled"
    assert claim(engine, ids[1]) is None
    with engine.connect() as conn:
        rows = dict(conn.execute(select(results.c.seq, results.c.error).where(results.c.job_id == job_id)).all())
    # Then the labels stay, the skipped items are cancelled (no result row to write), and none is failed
    assert rows == {0: None, 1: None}
    status = reports.job_status(engine, job_id, None)
    assert (status["done"], status["failed"], status["cancelled"]) == (2, 0, 4)


def test_cancelling_a_large_job_writes_a_few_rows_whatever_its_size(engine):
    # Given a 20,000-item job, one chunk of which is running
    job_id, ids = new_job(engine, 20_000, chunk_size=512, first=16)
    work = claim(engine, ids[0])
    # When it is cancelled, and the running chunk then writes its outcomes (one label, the rest errors)
    assert jobs.cancel_job(engine, job_id) == "cancelled"
    outcomes = [Outcome(work.seqs[0], label=1, confidence=1.0, probabilities=[0.0] * 10)]
    jobs.write_results(engine, work, outcomes + [Outcome(s, error="file could not be read") for s in work.seqs[1:]])
    # Then no result row was written for the skipped items, and nothing counts as failed
    with engine.connect() as conn:
        written = conn.execute(select(func.count()).select_from(results).where(results.c.job_id == job_id)).scalar()
    status = reports.job_status(engine, job_id, None)
    assert written == 1 and (status["done"], status["failed"], status["cancelled"]) == (1, 0, 19_999)
    assert jobs.is_cancelled(engine, job_id)


def test_bisect_halves_the_pending_items(engine):
    job_id, ids = new_job(engine, 10, chunk_size=8, first=2)
    work = claim(engine, ids[1])
    children = jobs.bisect_chunk(engine, work)
    assert len(children) == 2
    assert claim(engine, ids[1]) is None  # the parent is split: nothing left to claim there
    assert [claim(engine, c).seqs for c in children] == [[2, 3, 4, 5], [6, 7, 8, 9]]
