"""Read-only views of jobs and their results, for the API, the job page and the CLI."""
from __future__ import annotations

import uuid
from typing import Iterator, Sequence

from sqlalchemy import Engine, func, select

from pipeline.store.schema import chunks, items, jobs, results


def job_status(engine: Engine, job_id: uuid.UUID, api_key_id: uuid.UUID | None) -> dict | None:
    """The job's row with `done`, `failed` and `cancelled` counts, if it exists and belongs to `api_key_id`."""
    with engine.connect() as conn:
        job = conn.execute(select(jobs).where(jobs.c.id == job_id, _owned(api_key_id))).mappings().first()
        if job is None:
            return None
        done, failed = conn.execute(
            select(func.count(results.c.label), func.count(results.c.error)).where(results.c.job_id == job_id)
        ).one()
    return _with_cancelled({**job, "done": int(done), "failed": int(failed)})


def _with_cancelled(job: dict) -> dict:
    # Items a cancel skipped have no result row: they are counted here, never as failed.
    job["cancelled"] = job["total"] - job["done"] - job["failed"] if job["status"] == "cancelled" else 0
    return job


def list_jobs(engine: Engine, api_key_id: uuid.UUID, offset: int, limit: int) -> list[dict]:
    """A key's jobs, newest first, each with `done` and `failed` counts (index scans per job)."""
    def count(col):
        return select(func.count(col)).where(results.c.job_id == jobs.c.id).scalar_subquery()

    with engine.connect() as conn:
        rows = conn.execute(
            select(jobs, count(results.c.label).label("done"), count(results.c.error).label("failed"))
            .where(jobs.c.api_key_id == api_key_id).order_by(jobs.c.created_at.desc()).offset(offset).limit(limit)
        ).mappings().all()
    return [_with_cancelled(dict(r)) for r in rows]


def _owned(api_key_id: uuid.UUID | None):
    # A key sees only its own jobs; None (operator tools) sees every job.
    return jobs.c.api_key_id == api_key_id if api_key_id is not None else jobs.c.id.is_not(None)


def _result_rows(job_id: uuid.UUID):
    return (
        select(items.c.seq, items.c.name, items.c.true_label, results.c.label, results.c.confidence,
               results.c.probabilities, results.c.error, results.c.model_version)
        .select_from(items.outerjoin(results, (results.c.job_id == items.c.job_id) & (results.c.seq == items.c.seq)))
        .where(items.c.job_id == job_id)
        .order_by(items.c.seq)
    )


def result_page(engine: Engine, job_id: uuid.UUID, offset: int, limit: int) -> list[dict]:
    """Items in upload order from `offset`, with their result (label or error; both None if pending)."""
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(_result_rows(job_id).offset(offset).limit(limit)).mappings()]


def iter_results(engine: Engine, job_id: uuid.UUID, batch: int = 2000) -> Iterator[dict]:
    """Every item's result in upload order, fetched in batches (for streaming CSV)."""
    with engine.connect() as conn:
        rows = conn.execution_options(stream_results=True, yield_per=batch).execute(_result_rows(job_id))
        for r in rows.mappings():
            yield dict(r)


def class_counts(engine: Engine, job_id: uuid.UUID) -> dict[int, int]:
    """How many items got each label."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(results.c.label, func.count()).where(results.c.job_id == job_id, results.c.label.is_not(None))
            .group_by(results.c.label)
        ).all()
    return {int(label): int(n) for label, n in rows}


def model_versions(engine: Engine, job_id: uuid.UUID) -> dict[str, int]:
    """How many of the job's results each model version (manifest sha256) gave."""
    with engine.connect() as conn:
        rows = conn.execute(select(results.c.model_version, func.count())
                            .where(results.c.job_id == job_id, results.c.model_version.is_not(None))
                            .group_by(results.c.model_version)).all()
    return {v: int(n) for v, n in rows}


def accuracy(engine: Engine, job_id: uuid.UUID, classes: Sequence[str]) -> dict | None:
    """Accuracy overall and per class, and the confusion matrix (rows: true class, columns: predicted), over
    the job's items that carried a true label; None when none did.

    Items that failed (no prediction) count against accuracy: a label we could not give is not a right one.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            select(items.c.true_label, results.c.label, func.count())
            .select_from(items.join(results, (results.c.job_id == items.c.job_id) & (results.c.seq == items.c.seq)))
            .where(items.c.job_id == job_id, items.c.true_label.is_not(None))
            .group_by(items.c.true_label, results.c.label)
        ).all()
    if not rows:
        return None
    n = len(classes)
    confusion = [[0] * n for _ in range(n)]
    failed = [0] * n
    for truth, predicted, count in rows:
        if predicted is None:
            failed[truth] += count
        else:
            confusion[truth][predicted] += count
    per_class = []
    for i, name in enumerate(classes):
        images = sum(confusion[i]) + failed[i]
        if images:
            per_class.append({"class_name": name, "label": i, "images": images, "correct": confusion[i][i],
                              "failed": failed[i], "accuracy": confusion[i][i] / images})
    labelled = sum(c["images"] for c in per_class)
    correct = sum(c["correct"] for c in per_class)
    return {"labelled": labelled, "correct": correct, "failed": sum(failed), "accuracy": correct / labelled,
            "per_class": per_class, "classes": list(classes), "confusion": confusion}


def failed_items(engine: Engine, job_id: uuid.UUID, limit: int = 100) -> list[dict]:
    """Up to `limit` failed items with their errors, in upload order."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(items.c.name, results.c.error)
            .join(results, (results.c.job_id == items.c.job_id) & (results.c.seq == items.c.seq))
            .where(items.c.job_id == job_id, results.c.error.is_not(None))
            .order_by(items.c.seq).limit(limit)
        ).mappings()
        return [dict(r) for r in rows]


def chunk_latencies(engine: Engine, job_id: uuid.UUID) -> list[float]:
    """Seconds from start to finish of each finished chunk of a job (for benchmarks)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(func.extract("epoch", chunks.c.finished_at - chunks.c.started_at))
            .where(chunks.c.job_id == job_id, chunks.c.status == "done")
        ).scalars()
        return [float(x) for x in rows]
