"""Working one leased chunk: classify its pending images, or corner a poison image, and store the outcomes.

The lease is renewed by a thread while the chunk is worked on, so a worker that dies loses its chunk to the
next one within FB_LEASE_S, while a slow but live one keeps it.
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy.exc import SQLAlchemyError

from pipeline.inference.classify import INFER_BATCH, classify_items
from pipeline.items import ItemUnreadable, Outcome, SourceUnavailable
from pipeline.store import jobs, leases
from pipeline.store.jobs import ChunkWork
from workers.deadline import item_deadline

log = logging.getLogger(__name__)
POISON_ERROR = "skipped: this image crashed or stalled the worker on {n} attempts"
OUTAGE_ERROR = "not classified: the storage holding it could not be read for over {s:g} s"
# The item's own fault, though the store answers: it is missing, access to it is denied, it is archived or
# shorter than listed. The item fails with the message; any other OSError is the storage's (a flaky mount).
ITEM_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, ItemUnreadable)


class StorageUnavailable(SourceUnavailable):
    """The chunk's uploads cannot be read now (a missing or flaky mount); no item is failed for it."""


@contextmanager
def lease_kept(rt, work: ChunkWork) -> Iterator[None]:
    """Renew the chunk's lease every third of FB_LEASE_S until the block ends."""
    stop = threading.Event()
    lease_s = rt.settings.lease_s

    def keep() -> None:
        while not stop.wait(lease_s / 3):
            try:
                if not leases.renew(rt.engine, work.chunk_id, rt.holder, lease_s):
                    return  # taken over (we were presumed dead): writing our results is still harmless
            except SQLAlchemyError as exc:
                log.warning("could not renew the lease on chunk %s: %s", work.chunk_id, exc)

    thread = threading.Thread(target=keep, name=f"lease-{work.chunk_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def work_chunk(rt, work: ChunkWork, job_ended: Callable[[object], None]) -> dict:
    """Classify a leased chunk (or bisect it, or fail its poison image) and write its outcomes."""
    s = rt.settings
    if work.attempts > s.max_chunk_attempts:
        if len(work.seqs) > 1:
            halves = jobs.bisect_chunk(rt.engine, work)
            log.warning("chunk %s was lost on %d attempts: bisected into %s", work.chunk_id, work.attempts - 1, halves)
            return {"chunk": work.chunk_id, "bisected": halves}
        # A poison image: it killed or hung its process on every attempt. Fail it alone.
        outcomes = [Outcome(seq, error=POISON_ERROR.format(n=work.attempts - 1)) for seq in work.seqs]
    elif (backend := rt.backends.get(work.backend)) is None:
        outcomes = [Outcome(seq, error=f"backend {work.backend!r} is not served by the {rt.pool} pool")
                    for seq in work.seqs]
    else:
        from pipeline.images.preprocess import prepare

        cfg, max_pixels, limit = rt.manifest.preprocess, s.limits.max_pixels, s.item_time_limit_s

        def read(spec):
            with item_deadline(limit):
                try:
                    return rt.read(work.job_id, spec)
                except ITEM_ERRORS:
                    raise  # this item fails alone, saying why
                except OSError as exc:  # a flaky mount: the image is fine, the storage is not
                    raise StorageUnavailable(f"uploads of job {work.job_id} cannot be read: {exc}") from exc

        def prepared(data: bytes):
            with item_deadline(limit):
                return prepare(data, cfg, max_pixels=max_pixels)

        outcomes = []
        try:
            with lease_kept(rt, work):
                rt.plan(work.job_id, work.items)  # an object store fetches neighbouring members together
                for i in range(0, len(work.seqs), INFER_BATCH):
                    if i and jobs.is_cancelled(rt.engine, work.job_id):
                        log.info("chunk %s stopped: its job was cancelled", work.chunk_id)
                        break  # the labels given so far are kept; the rest of the job is cancelled
                    outcomes += classify_items(work.seqs[i:i + INFER_BATCH], work.items[i:i + INFER_BATCH],
                                               read=read, prepare=prepared, predict=backend.predict)
        except SourceUnavailable as exc:
            # Nothing is wrong with the images: give the chunk back for a while, go on with other work, unless
            # the storage has been unreadable for longer than FB_STORAGE_OUTAGE_S: then its items fail.
            if leases.unavailable_for(rt.engine, work.chunk_id) < s.storage_outage_s:
                log.warning("chunk %s deferred %g s: %s", work.chunk_id, s.storage_retry_s, exc)
                leases.defer(rt.engine, work.chunk_id, rt.holder, s.storage_retry_s)
                return {"chunk": work.chunk_id, "deferred_s": s.storage_retry_s}
            log.error("chunk %s: storage unreadable past FB_STORAGE_OUTAGE_S, its items fail: %s", work.chunk_id, exc)
            decided = {o.seq for o in outcomes}
            outcomes += [Outcome(seq, error=OUTAGE_ERROR.format(s=s.storage_outage_s))
                         for seq in work.seqs if seq not in decided]
    final = jobs.write_results(rt.engine, work, outcomes, model_version=rt.manifest.version)
    if final is not None:
        job_ended(work.job_id)
    return {"chunk": work.chunk_id, "items": len(outcomes), "job_final": final}
