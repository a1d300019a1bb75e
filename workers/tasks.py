"""Celery tasks: thin and idempotent. They load rows by id, call `pipeline`, write results, and retry."""
from __future__ import annotations

import logging
import uuid

from celery import shared_task
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import InterfaceError, OperationalError

from pipeline.inference.classify import classify_items
from pipeline.items import Outcome, SourceUnavailable
from pipeline.store import jobs
from pipeline.store import reconcile as rec
from workers import runtime

log = logging.getLogger(__name__)
# Lost connections and restarting servers (an unreachable object store too); a programming error is not
# retried forever.
TRANSIENT = (OperationalError, InterfaceError, BrokerError, RedisConnectionError, ConnectionError, SourceUnavailable)
_RETRY = dict(autoretry_for=TRANSIENT, retry_backoff=1, retry_backoff_max=30, retry_jitter=True, max_retries=None)
POISON_ERROR = "skipped: this image crashed or stalled the worker on {n} attempts"


@shared_task(bind=True, name="workers.tasks.classify_chunk", **_RETRY)
def classify_chunk(self, chunk_id: int) -> dict:
    """Classify one chunk of a job and store its results (a redelivered chunk changes nothing)."""
    rt = runtime.current()
    work = jobs.claim_chunk(rt.engine, chunk_id)
    if work is None:
        return {"chunk": chunk_id, "skipped": True}
    if work.attempts > rt.settings.max_chunk_attempts:
        if len(work.seqs) > 1:
            # Lost on every attempt: retry each item on its own, so one bad image cannot stall the rest.
            for child in jobs.split_chunk(rt.engine, work):
                classify_chunk.apply_async((child,), queue=work.pool)
            return {"chunk": chunk_id, "split": len(work.seqs)}
        # A poison item: it killed or hung its process on every attempt. Fail it alone.
        outcomes = [Outcome(s, error=POISON_ERROR.format(n=work.attempts - 1)) for s in work.seqs]
    elif (backend := rt.backends.get(work.backend)) is None:
        outcomes = [Outcome(s, error=f"backend {work.backend!r} is not served by the {rt.pool} pool")
                    for s in work.seqs]
    else:
        from pipeline.images.preprocess import prepare

        cfg, max_pixels = rt.manifest.preprocess, rt.settings.limits.max_pixels
        try:
            rt.plan(work.job_id, work.items)
            outcomes = classify_items(
                work.seqs, work.items,
                read=lambda spec: rt.read(work.job_id, spec),
                prepare=lambda data: prepare(data, cfg, max_pixels=max_pixels),
                predict=backend.predict,
            )
        except SourceUnavailable as exc:
            # The store, not the images: retry later (autoretry, with backoff) without counting the attempt.
            log.warning("chunk %s: %s; retrying", chunk_id, exc)
            jobs.release_chunk(rt.engine, work)
            raise
    final = jobs.write_results(rt.engine, work, outcomes)
    if final is not None:
        job_ended(work.job_id)
    return {"chunk": chunk_id, "items": len(outcomes), "job_final": final}


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
        deliver_callback.apply_async((cb,), queue="control")  # else the reconciler sends it


@shared_task(bind=True, name="workers.tasks.deliver_callback", **_RETRY)
def deliver_callback(self, callback_id: int) -> str:
    """One delivery attempt of a completion callback; the reconciler schedules the next one if it fails."""
    from workers.callbacks import deliver

    s = runtime.settings()
    return deliver(runtime.engine(), callback_id, allow_private=s.callback_allow_private,
                   timeout_s=s.callback_timeout_s, max_attempts=s.callback_max_attempts)


@shared_task(bind=True, name="workers.tasks.reconcile", **_RETRY)
def reconcile(self) -> dict:
    """Re-send chunks whose messages were lost and callbacks whose retry time has come."""
    s, engine = runtime.settings(), runtime.engine()
    lost = rec.stale_chunks(engine, s.stale_chunk_s)
    for chunk_id, pool in lost:
        classify_chunk.apply_async((chunk_id,), queue=pool)
    due = rec.due_callbacks(engine)
    for cb in due:
        deliver_callback.apply_async((cb,), queue="control")
    if lost:
        log.warning("re-sent %d chunks presumed lost", len(lost))
    return {"resent_chunks": len(lost), "callbacks": len(due)}
