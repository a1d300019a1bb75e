"""The Celery application factory both the web service and the workers use: queues, routes, reliability, beat."""
from __future__ import annotations

from typing import Sequence

from celery import Celery
from kombu import Queue

from pipeline.settings import POOLS, Settings

# Completion callbacks have a queue and worker of their own (threads): a slow receiver, held up to its
# deadline, never delays dispatch, the reconciler or housekeeping on `control`.
CALLBACKS = "callbacks"


def broker_url(settings: Settings) -> str:
    """The Redis URL, or a clear error when neither REDIS_URL nor the local launcher provided one."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: start the local stack with `fashion-batch up`, or set REDIS_URL")
    return settings.redis_url


def create_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """A Celery app configured for at-least-once delivery and idempotent, bounded tasks.

    The web service uses it only to publish by task name; the worker passes its task modules as `include`.
    """
    app = Celery("fashion_batch", broker=broker_url(settings), include=list(include))
    app.conf.update(
        task_queues=[Queue(name) for name in (*POOLS, "control", CALLBACKS)],
        task_default_queue="control",
        task_routes={"workers.tasks.reconcile": {"queue": "control"},
                     "workers.tasks.dispatch": {"queue": "control"},
                     "workers.tasks.housekeeping": {"queue": "control"},
                     "workers.tasks.deliver_callback": {"queue": CALLBACKS}},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in PostgreSQL
        # At-least-once: acknowledge after the work, requeue when a pool process dies or a chunk hangs past
        # its hard time limit; take one message at a time so a lost process loses nothing it prefetched.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.pool_processes,  # `celery worker -c N` overrides it (the GPU pool runs 1)
        task_time_limit=settings.task_time_limit_s,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_proc_alive_timeout=120.0,  # a new pool process loads its models before it reports alive
        worker_max_memory_per_child=1_500_000,  # KiB: recycle a process that grew past 1.5 GB
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
        # Beat keeps its schedule and a lock in Redis (celery-redbeat): one beat sends the periodic tasks; a
        # second one stands by and takes over once the lock lapses (the first was killed) or is released.
        beat_scheduler="redbeat.RedBeatScheduler",
        redbeat_redis_url=broker_url(settings),
        redbeat_key_prefix="fb:redbeat",
        redbeat_lock_timeout=settings.beat_lock_timeout_s,
        beat_max_loop_interval=max(1.0, settings.beat_lock_timeout_s / 5),
        beat_schedule={
            "dispatch": {"task": "workers.tasks.dispatch", "schedule": settings.dispatch_every_s,
                         "options": {"queue": "control", "expires": settings.dispatch_every_s * 2}},
            "housekeeping": {"task": "workers.tasks.housekeeping", "schedule": settings.housekeeping_every_s,
                             "options": {"queue": "control", "expires": settings.housekeeping_every_s}},
            "reconcile": {"task": "workers.tasks.reconcile", "schedule": settings.reconcile_every_s,
                          "options": {"queue": "control", "expires": settings.reconcile_every_s * 2}},
            **{
                f"benchmark-{pool}": {"task": "workers.benchmark_task.benchmark_pool",
                                      "schedule": settings.benchmark_every_s, "args": (pool,),
                                      "options": {"queue": pool, "expires": settings.benchmark_every_s}}
                for pool in POOLS if settings.benchmark_every_s > 0  # 0: no periodic benchmark
            },
        },
    )
    return app
