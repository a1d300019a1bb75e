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

from pipeline.inference.classify import classify_items, infer_batch_for
from pipeline.items import Outcome, SourceUnavailable
from pipeline.store import jobs, leases
from pipeline.store.jobs import ChunkWork
from workers.deadline import item_deadline

log = logging.getLogger(__name__)
POISON_ERROR = "skipped: this image crashed or stalled the worker on {n} attempts"


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
    elif work.model not in rt.catalogue.manifests:
        outcomes = [Outcome(seq, error=f"model {work.model!r} is not installed on this worker")
                    for seq in work.seqs]
    elif (backend := rt.backends.get(work.model, work.backend)) is None:
        outcomes = [Outcome(seq, error=f"backend {work.backend!r} is not served by the {rt.pool} pool")
                    for seq in work.seqs]
    else:
        from pipeline.images.kinds import kind_of_config

        manifest = rt.catalogue.get(work.model)
        cfg, max_pixels, limit = manifest.preprocess, s.limits.max_pixels, s.item_time_limit_s
        prepare = kind_of_config(cfg).prepare  # the model's own preprocessing (its manifest's kind)

        def read(spec):
            with item_deadline(limit):
                try:
                    return rt.read(work.job_id, spec)
                except OSError as exc:  # a missing or flaky mount: the image is fine, the storage is not
                    raise StorageUnavailable(f"uploads of job {work.job_id} cannot be read: {exc}") from exc

        def prepared(data: bytes):
            with item_deadline(limit):
                return prepare(data, cfg, max_pixels=max_pixels)

        try:
            with lease_kept(rt, work):
                rt.plan(work.job_id, work.items)  # an object store fetches neighbouring members together
                outcomes = classify_items(work.seqs, work.items, read=read, prepare=prepared,
                                          predict=backend.predict, infer_batch=infer_batch_for(manifest))
        except SourceUnavailable as exc:
            # Nothing is wrong with the images: give the chunk back for a while, go on with other work.
            log.warning("chunk %s deferred %g s: %s", work.chunk_id, s.storage_retry_s, exc)
            leases.defer(rt.engine, work.chunk_id, rt.holder, s.storage_retry_s)
            return {"chunk": work.chunk_id, "deferred_s": s.storage_retry_s}
    version = rt.catalogue.manifests[work.model].version if work.model in rt.catalogue.manifests else None
    final = jobs.write_results(rt.engine, work, outcomes, model_version=version)
    if final is not None:
        job_ended(work.job_id)
    return {"chunk": work.chunk_id, "items": len(outcomes), "job_final": final}
