"""Jobs in PostgreSQL: chunk planning, claiming, idempotent results, completion, cancel, split, reconcile."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import func, select, text, update

from pipeline.items import ItemSpec, Outcome
from pipeline.store import jobs, reconcile
from pipeline.store.schema import callbacks, chunks, results
from pipeline.store.schema import jobs as jobs_table


def new_job(engine, n: int, chunk_size: int = 4, first: int = 2, callback_url: str | None = None):
    job_id = uuid.uuid4()
    ids = jobs.create_job(engine, job_id=job_id, api_key_id=None, backend="onnx", pool="cpu",
                          callback_url=callback_url, specs=[ItemSpec(f"{i}.png", "part-00000") for i in range(n)],
                          chunk_size=chunk_size, first_chunk_size=first)
    return job_id, ids


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
    work = jobs.claim_chunk(engine, ids[0])
    jobs.write_results(engine, work, labelled(work))
    # When the same chunk is delivered again
    again = jobs.claim_chunk(engine, ids[0])
    # Then there is nothing to do, and writing the old outcomes again adds no row
    assert again is None
    jobs.write_results(engine, work, labelled(work))
    assert result_count(engine, job_id) == 2


def test_a_chunk_restarted_midway_only_gets_its_missing_items(engine):
    job_id, ids = new_job(engine, 6)
    work = jobs.claim_chunk(engine, ids[1])
    jobs.write_results(engine, work, labelled(work)[:2])  # as if the worker died after half of it
    with engine.begin() as conn:
        conn.execute(update(chunks).where(chunks.c.id == ids[1]).values(status="running"))
    retry = jobs.claim_chunk(engine, ids[1])
    assert retry.attempts == 2 and retry.seqs == work.seqs[2:]


def test_job_ends_once_with_the_right_status_when_chunks_finish_together(engine):
    for _ in range(5):
        # Given a job of many chunks, claimed at once
        job_id, ids = new_job(engine, 16, chunk_size=2, first=2, callback_url="http://example.com/hook")
        works = [jobs.claim_chunk(engine, i) for i in ids]
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


def test_cancel_keeps_labelled_items_and_skips_the_rest(engine):
    job_id, ids = new_job(engine, 6)
    work = jobs.claim_chunk(engine, ids[0])
    jobs.write_results(engine, work, labelled(work))
    assert jobs.cancel_job(engine, job_id) == "cancelled"
    assert jobs.claim_chunk(engine, ids[1]) is None
    with engine.connect() as conn:
        rows = dict(conn.execute(select(results.c.seq, results.c.error).where(results.c.job_id == job_id)).all())
    assert rows == {0: None, 1: None, 2: "cancelled", 3: "cancelled", 4: "cancelled", 5: "cancelled"}


def test_split_makes_one_chunk_per_pending_item(engine):
    job_id, ids = new_job(engine, 6)
    work = jobs.claim_chunk(engine, ids[1])
    children = jobs.split_chunk(engine, work)
    assert len(children) == 4
    assert jobs.claim_chunk(engine, ids[1]) is None
    assert [jobs.claim_chunk(engine, c).seqs for c in children] == [[2], [3], [4], [5]]


def test_reconcile_resends_lost_chunks_but_not_ones_waiting_in_a_busy_queue(engine):
    # Given a running chunk last touched long ago (its worker died) and a queued chunk of the same age
    job_id, ids = new_job(engine, 6, chunk_size=2, first=2)
    jobs.claim_chunk(engine, ids[0])
    with engine.begin() as conn:
        conn.execute(text("update chunks set pool = 'reconcile-test' where job_id = :j"), {"j": job_id})
        conn.execute(text("update chunks set updated_at = now() - interval '1 hour' where job_id = :j"),
                     {"j": job_id})
        conn.execute(text("update chunks set updated_at = now() where id = :c"), {"c": ids[2]})
        conn.execute(text("update chunks set status = 'done' where id = :c"), {"c": ids[2]})
    # When the reconciler looks while the pool just finished a chunk, Then only the running chunk is re-sent
    lost = [c for c, _ in reconcile.stale_chunks(engine, 60) if c in ids]
    assert lost == [ids[0]]
    # And once the pool has been idle as long, the waiting chunk is presumed lost too
    with engine.begin() as conn:
        conn.execute(text("update chunks set updated_at = now() - interval '1 hour' where job_id = :j"),
                     {"j": job_id})
    assert [c for c, _ in reconcile.stale_chunks(engine, 60) if c in ids] == [ids[0], ids[1]]
    # And a chunk just re-sent is not re-sent again at once
    assert [c for c, _ in reconcile.stale_chunks(engine, 60) if c in ids] == []
