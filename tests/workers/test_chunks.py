"""workers.chunks.work_chunk in this process, against the real database: which read errors fail an item, which
defer the chunk (and for how long at most), and a cancel stopping a running chunk at its next batch.

The runtime is built here (`Rt` below) with the shipped manifest's preprocessing and a stand-in model whose
predictions are uniform: these tests are about what becomes of items, not about labels.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
from sqlalchemy import select

from pipeline.inference.classify import INFER_BATCH
from pipeline.items import ItemSpec, ItemUnreadable, SourceUnavailable
from pipeline.store import jobs, leases, reports
from pipeline.store.schema import chunks, results
from tests.helpers import ROOT, garment_png
from workers.chunks import OUTAGE_ERROR, work_chunk

IMAGE = garment_png(size=(40, 50))


@dataclass
class Model:
    on_predict: Callable[[], None] = lambda: None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        self.on_predict()
        return np.full((len(batch), 10), 0.1, np.float32)


@dataclass
class Rt:
    """The parts of workers.runtime.Runtime that work_chunk uses."""

    settings: object
    engine: object
    read_item: Callable[[ItemSpec], bytes]
    model: Model = field(default_factory=Model)
    pool: str = field(default_factory=lambda: f"chunk-test-{uuid.uuid4().hex[:8]}")
    holder: str = "test-host:1"

    def __post_init__(self):
        from pipeline.inference.manifest import load_manifest

        self.manifest = load_manifest(ROOT / "weights")
        self.backends = {"onnx": self.model}

    def plan(self, job_id, specs) -> None:
        pass

    def read(self, job_id, spec: ItemSpec) -> bytes:
        return self.read_item(spec)


def leased(rt: Rt, n: int, chunk_size: int):
    job_id = uuid.uuid4()
    jobs.create_job(rt.engine, job_id=job_id, api_key_id=None, backend="onnx", pool=rt.pool, callback_url=None,
                    specs=[ItemSpec(f"{i:04d}.png", "part-00000") for i in range(n)], chunk_size=chunk_size,
                    first_chunk_size=chunk_size)
    return job_id, leases.lease_next(rt.engine, rt.pool, rt.holder, 60)


def outcomes(engine, job_id) -> dict[int, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(results.c.seq, results.c.error).where(results.c.job_id == job_id)).all())


@pytest.mark.parametrize("error", [
    FileNotFoundError("s3://b/k/0001.png: no such object"),
    PermissionError("s3://b/k/0001.png: access denied"),
    ItemUnreadable("s3://b/k/0001.png: archived, not readable until restored"),
])
def test_a_missing_or_denied_item_fails_alone_and_the_job_ends(settings, engine, error):
    # Given a chunk one of whose objects is missing, denied or archived, though the store answers
    def read(spec):
        if spec.name == "0001.png":
            raise error
        return IMAGE

    rt = Rt(settings, engine, read)
    job_id, work = leased(rt, 4, 4)
    # When a worker works it
    done = work_chunk(rt, work, lambda _: None)
    # Then that item fails with the reason, the others are labelled, and the job ends (it is not deferred)
    assert "deferred_s" not in done and done["job_final"] == "partial"
    got = outcomes(engine, job_id)
    assert got[1] is not None and str(error) in got[1] and [got[i] for i in (0, 2, 3)] == [None] * 3


def test_an_outage_defers_the_chunk_until_the_deadline_then_fails_its_items_saying_why(settings, engine):
    # Given a store that cannot be reached
    def read(spec):
        raise SourceUnavailable("the object store cannot be reached")

    rt = Rt(settings, engine, read)
    job_id, work = leased(rt, 3, 3)
    # When a worker tries the chunk within FB_STORAGE_OUTAGE_S / Then it is deferred, no item fails
    assert "deferred_s" in work_chunk(rt, work, lambda _: None) and outcomes(engine, job_id) == {}
    # When the outage has lasted past the deadline
    rt.settings = settings.replace(storage_outage_s=0.0)
    with engine.begin() as conn:
        conn.execute(chunks.update().where(chunks.c.id == work.chunk_id).values(lease_until=None))
    again = leases.lease_next(rt.engine, rt.pool, rt.holder, 60)
    done = work_chunk(rt, again, lambda _: None)
    # Then its items fail, saying why, and the job ends
    assert done["job_final"] == "failed"
    assert set(outcomes(engine, job_id).values()) == {OUTAGE_ERROR.format(s=0.0)}


def test_a_cancel_stops_a_running_chunk_at_its_next_batch(settings, engine):
    # Given a chunk of three batches whose job is cancelled while its first batch is being classified
    rt = Rt(settings, engine, lambda spec: IMAGE)
    job_id, work = leased(rt, 3 * INFER_BATCH, 3 * INFER_BATCH)
    rt.model.on_predict = lambda: jobs.cancel_job(engine, job_id)
    # When the worker goes on
    work_chunk(rt, work, lambda _: None)
    # Then the first batch keeps its labels, and the other two were never classified: cancelled, not failed
    status = reports.job_status(engine, job_id, None)
    assert (status["status"], status["done"], status["failed"], status["cancelled"]) == \
        ("cancelled", INFER_BATCH, 0, 2 * INFER_BATCH)
