"""Celery tasks: thin and idempotent. Messages only wake workers up; the work itself is leased from PostgreSQL.

`drain(pool)` takes chunks of `pool` one after another (fairly, under a lease) for up to FB_DRAIN_BUDGET_S,
then hands over. `dispatch` (beat, every FB_DISPATCH_EVERY_S) keeps a few wake-ups waiting for each pool
that has claimable chunks, so a job whose wake-ups were never sent, or whose worker died, is picked up within
seconds, and the queue never piles up duplicates.
"""
from __future__ import annotations

import logging
import time
import uuid

import redis
from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError

from pipeline.broker import CALLBACKS
from pipeline.items import SourceUnavailable
from pipeline.store import jobs, leases
from pipeline.store import reconcile as rec
from workers import runtime
from workers.chunks import POISON_ERROR, work_chunk  # noqa: F401 - POISON_ERROR is part of this module's API

log = logging.getLogger(__name__)
# Lost connections and restarting servers (an unreachable object store too); a programming error is not
# retried forever.
TRANSIENT = (OperationalError, InterfaceError, BrokerError, RedisConnectionError, ConnectionError, SourceUnavailable)
_RETRY = dict(autoretry_for=TRANSIENT, retry_backoff=1, retry_backoff_max=30, retry_jitter=True, max_retries=None)


@shared_task(bind=True, name="workers.tasks.drain", **_RETRY)
def drain(self, pool: str) -> dict:
    """Work chunks of `pool` until none is claimable or the budget is spent (a duplicate wake-up is harmless)."""
    rt = runtime.current()
    deadline = time.monotonic() + rt.settings.drain_budget_s
    worked = 0
    while time.monotonic() < deadline:
        pinned = rt.manifest.version if rt.settings.pin_model_version else None
        work = leases.lease_next(rt.engine, pool, rt.holder, rt.settings.lease_s, model_version=pinned)
        if work is None:
            return {"pool": pool, "chunks": worked}
        done = work_chunk(rt, work, job_ended)
        worked += 1
        if "deferred_s" in done:
            # Its uploads cannot be read now: look again once the deferral is over (beat's dispatch would too).
            # Such chunks come after every healthy one, so none is waiting: stop rather than spin on deferrals.
            drain.apply_async((pool,), queue=pool, countdown=done["deferred_s"])
            return {"pool": pool, "chunks": worked, "deferred": True}
    drain.apply_async((pool,), queue=pool)  # there may be more: hand over, so other messages get their turn
    return {"pool": pool, "chunks": worked, "handed_over": True}


def wake(app, pool: str, n: int, producer=None, retry_policy: dict | None = None) -> None:
    """Publish `n` wake-ups for `pool` (the web service and `dispatch` both call this)."""
    for _ in range(n):
        app.send_task("workers.tasks.drain", args=(pool,), queue=pool, producer=producer, retry=True,
                      retry_policy=retry_policy or {"max_retries": 2})


@shared_task(bind=True, name="workers.tasks.dispatch", **_RETRY)
def dispatch(self) -> dict:
    """Top up each pool's waiting wake-ups to min(claimable chunks, FB_WAKEUPS)."""
    s, engine = runtime.settings(), runtime.engine()
    client = redis.Redis.from_url(s.redis_url, socket_connect_timeout=2, socket_timeout=2)
    sent = {}
    for pool, claimable in leases.claimable_counts(engine).items():
        missing = min(claimable, s.wakeups) - int(client.llen(pool))
        if missing > 0:
            wake(self.app, pool, missing)
            sent[pool] = missing
    return {"woken": sent}


def job_ended(job_id: uuid.UUID) -> None:
    """Once a job has its final status: drop its uploaded parts and send its callback now, if it has one."""
    from pipeline.blobs import open_store

    s = runtime.settings()
    if not s.keep_uploads:
        try:
            open_store(s).remove_job(job_id)  # every item has its result; the bytes are no longer needed
        except SourceUnavailable as exc:
            log.warning("job %s: its parts could not be deleted (%s); the bucket's lifecycle rule will", job_id, exc)
    cb = jobs.callback_id(runtime.engine(), job_id)
    if cb is not None:
        deliver_callback.apply_async((cb,), queue=CALLBACKS)  # else the reconciler sends it


@shared_task(bind=True, name="workers.tasks.deliver_callback", **_RETRY)
def deliver_callback(self, callback_id: int) -> str:
    """One delivery attempt of a completion callback; the reconciler schedules the next one if it fails."""
    from workers.callbacks import deliver

    s = runtime.settings()
    return deliver(runtime.engine(), callback_id, allow_private=s.callback_allow_private,
                   timeout_s=s.callback_timeout_s, max_attempts=s.callback_max_attempts)


@shared_task(bind=True, name="workers.tasks.reconcile", **_RETRY)
def reconcile(self) -> dict:
    """Send callbacks whose retry time has come."""
    due = rec.due_callbacks(runtime.engine())
    for cb in due:
        deliver_callback.apply_async((cb,), queue=CALLBACKS)
    return {"callbacks": len(due)}


@shared_task(bind=True, name="workers.tasks.housekeeping", **_RETRY)
def housekeeping(self) -> dict:
    """Purge jobs past FB_RETENTION_DAYS, and uploads no running job owns (crashed requests, lost clean-ups)."""
    from pipeline.blobs import local, open_store
    from pipeline.store import retention

    s, engine = runtime.settings(), runtime.engine()
    store = open_store(s)

    def remove_uploads(ids) -> None:
        for job_id in ids:
            store.remove_job(job_id)  # the job's uploads, in a folder or a bucket

    purged, more = retention.purge_jobs(engine, s.retention_days, on_purged=remove_uploads)
    if more:
        housekeeping.apply_async(queue="control")  # more are due: go on in a fresh task, each run bounded
    spooled, folders = local.stale_entries(store.spool_root(), s.orphan_after_s)
    alive = retention.statuses(engine, folders)
    ended = [f for j, f in folders.items() if j not in alive or (alive[j] in jobs.FINAL and not s.keep_uploads)]
    local.remove(spooled + ended)
    return {"purged_jobs": len(purged), "more_due": more, "spooled_files": len(spooled), "job_folders": len(ended)}
