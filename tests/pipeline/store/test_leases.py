"""pipeline.store.leases: one live holder per chunk, honest attempts, fair order, nothing stranded."""
from __future__ import annotations

import uuid

from sqlalchemy import func, text, update

from pipeline.items import ItemSpec
from pipeline.store import jobs, leases
from pipeline.store.schema import chunks


def job(engine, n: int, pool: str, *, api_key_id=None, priority: str = "bulk", chunk: int = 2):
    job_id = uuid.uuid4()
    ids = jobs.create_job(engine, job_id=job_id, api_key_id=api_key_id, backend="onnx", pool=pool,
                          callback_url=None, specs=[ItemSpec(f"{i}.png", "part-00000") for i in range(n)],
                          chunk_size=chunk, first_chunk_size=chunk, priority=priority)
    return job_id, ids


def pool() -> str:
    return f"lease-test-{uuid.uuid4().hex[:8]}"  # a pool of its own: other tests' chunks stay out of the way


def test_a_live_lease_is_never_handed_to_another_holder(engine):
    p = pool()
    _, ids = job(engine, 2, p)
    first = leases.lease_next(engine, p, "host-a:1", 60)
    # When another holder asks while the lease is live / Then it gets nothing, and the holder resumes its own
    assert leases.lease_next(engine, p, "host-b:2", 60) is None
    again = leases.lease_next(engine, p, "host-a:1", 60)
    assert again.chunk_id == first.chunk_id and again.attempts == first.attempts == 1  # a resume is no attempt


def test_a_lapsed_lease_is_taken_over_and_that_counts_an_attempt(engine):
    p = pool()
    _, ids = job(engine, 2, p)
    leases.lease_next(engine, p, "host-a:1", 60)
    with engine.begin() as conn:
        conn.execute(update(chunks).where(chunks.c.id == ids[0]).values(lease_until=func.now() - text("interval '1s'")))
    taken = leases.lease_next(engine, p, "host-b:2", 60)
    assert taken.chunk_id == ids[0] and taken.attempts == 2
    # And the first holder can no longer renew it
    assert not leases.renew(engine, ids[0], "host-a:1", 60) and leases.renew(engine, ids[0], "host-b:2", 60)


def test_a_live_lease_is_kept_whatever_the_local_pid_table_says(engine):
    # Given a chunk leased by "this host" under a pid that does not exist here (another container sharing the
    # host name, e.g. host networking, but not the PID namespace), whose lease is live
    import subprocess
    import sys

    p = pool()
    _, ids = job(engine, 2, p)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    elsewhere = f"{leases.holder_id().rpartition(':')[0]}:{gone.stdout.strip()}"
    leases.lease_next(engine, p, elsewhere, 600)
    # When a worker here looks / Then it leaves the chunk alone: liveness comes from the lease, not the pid
    assert leases.lease_next(engine, p, leases.holder_id(), 60) is None
    assert leases.claim(engine, ids[0], leases.holder_id(), 60) is None
    # And once the lease lapses (the holder stopped renewing), the chunk is taken over as one more attempt
    with engine.begin() as conn:
        conn.execute(update(chunks).where(chunks.c.id == ids[0]).values(lease_until=func.now() - text("interval '1s'")))
    taken = leases.lease_next(engine, p, leases.holder_id(), 60)
    assert taken is not None and taken.chunk_id == ids[0] and taken.attempts == 2


def test_a_small_job_is_served_before_the_rest_of_a_big_one(engine):
    p = pool()
    big, big_ids = job(engine, 40, p)
    leases.lease_next(engine, p, "w:1", 60)  # the big job has a chunk in flight on another worker
    small, small_ids = job(engine, 1, p)
    # Then its status says nothing is served before it: the big job already has its turn (FIFO would say 19)
    from pipeline.store.reports import job_status

    assert leases.queued_behind(engine, job_status(engine, small, None)) == 0
    # When the next worker asks / Then it gets the small job's chunk, although the big job is older
    assert leases.lease_next(engine, p, "w:2", 60).job_id == small


def test_interactive_jobs_go_first_and_keys_share(engine):
    p = pool()
    bulk, _ = job(engine, 4, p)
    urgent, _ = job(engine, 4, p, priority="interactive")
    assert leases.lease_next(engine, p, "w:1", 60).job_id == urgent


def test_claimable_counts_see_chunks_nobody_was_told_about(engine):
    # Given a job recorded but never announced (its web process died before publishing)
    p = pool()
    job(engine, 6, p)
    # Then the dispatcher's count sees its three chunks
    assert leases.claimable_counts(engine)[p] == 3


def test_a_deferred_chunk_waits_and_its_lease_counts_no_attempt(engine):
    # Given a chunk whose uploads could not be read, given back for a minute
    p = pool()
    _, ids = job(engine, 2, p)
    work = leases.lease_next(engine, p, "w:1", 60)
    leases.defer(engine, work.chunk_id, "w:1", 60)
    # Then nobody gets it meanwhile, the dispatcher does not count it, and its attempts are as before
    assert leases.lease_next(engine, p, "w:2", 60) is None and p not in leases.claimable_counts(engine)
    with engine.begin() as conn:
        conn.execute(update(chunks).where(chunks.c.id == ids[0]).values(lease_until=func.now() - text("interval '1s'")))
    again = leases.lease_next(engine, p, "w:2", 60)
    assert again.chunk_id == ids[0] and again.attempts == 1


def test_a_chunk_whose_storage_was_unreadable_waits_behind_healthy_work(engine):
    # Given an interactive job whose chunk was deferred (its storage unreadable), and then a bulk job
    p = pool()
    _, stuck = job(engine, 2, p, priority="interactive")
    work = leases.lease_next(engine, p, "w:1", 60)
    leases.unavailable_for(engine, work.chunk_id)
    leases.defer(engine, work.chunk_id, "w:1", 0)
    healthy, _ = job(engine, 2, p)
    # When a worker asks / Then it gets the healthy bulk job's chunk first: an outage never starves the others
    assert leases.lease_next(engine, p, "w:2", 60).job_id == healthy
