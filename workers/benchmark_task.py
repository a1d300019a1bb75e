"""The periodic backend benchmark: beat sends it to each pool's queue; it times the backends that pool serves.

Thin: the timing lives in pipeline/benchmark.py, the table in pipeline/benchmark_store.py.
"""
from __future__ import annotations

import socket
import uuid

from celery import shared_task

from pipeline.inference.benchmark import benchmark_backends, load_sample
from pipeline.inference.classify import infer_batch_for
from pipeline.store.benchmarks import record
from workers import runtime
from workers.tasks import TRANSIENT

TASK_NAME = "workers.benchmark_task.benchmark_pool"


def run_id_for(task_id: str | None) -> uuid.UUID:
    """The run's id: the task's own id, so a retried or redelivered message rewrites the same run."""
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"fashion-batch-benchmark:{task_id}") if task_id else uuid.uuid4()


@shared_task(bind=True, name=TASK_NAME, autoretry_for=TRANSIENT, retry_backoff=5, max_retries=3)
def benchmark_pool(self, pool: str, repetitions: int = 15, warmup: int = 3, max_sample: int | None = None) -> dict:
    """Time every backend this worker's pool serves, of every model, on each model's sample; store one run."""
    rt = runtime.current()
    if pool != rt.pool:
        # Routed by queue name, so this only happens when a worker listens to another pool's queue.
        return {"skipped": f"this worker serves the {rt.pool} pool, not {pool}"}
    run_id = run_id_for(self.request.id)
    # Batches of the size chunks are inferred in, so the figures are those of production calls.
    # This loads every backend the pool serves, of every model, into the process that runs it (torch included,
    # if it serves eager or TorchScript); FB_BENCHMARK_EVERY_S=0 turns the periodic benchmark off where that matters.
    figures = {}
    for model, manifest in rt.catalogue.manifests.items():
        x, y = load_sample(manifest)
        x, y = x[:max_sample], y[:max_sample]  # all of it unless told (a quick run scores on fewer images)
        backends = {name: rt.backends.get(model, name) for name in rt.backends.served}
        timings = benchmark_backends(backends, x, y, batch_size=infer_batch_for(manifest), repetitions=repetitions,
                                     warmup=warmup)
        record(rt.engine, run_id=run_id, pool=rt.pool, device=rt.device, host=socket.gethostname(), timings=timings,
               model=model)
        figures[model] = {t.backend: t.images_per_s for t in timings}
    return {"run_id": str(run_id), "pool": rt.pool, "models": figures}
