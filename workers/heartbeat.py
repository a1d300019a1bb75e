"""The worker's heartbeat: while it consumes its pool's queue, it says so in Redis (pipeline.pools).

Runs as a daemon thread in the worker's main process from `worker_ready` until shutdown, so `POST /v1/jobs`
can refuse a pool no live worker serves instead of queueing jobs nobody will take.
"""
from __future__ import annotations

import logging
import threading

import redis
from celery.signals import worker_ready, worker_shutting_down

from pipeline import pools

log = logging.getLogger(__name__)
_stop = threading.Event()


def install(redis_url: str, pool: str, model_version: str | None = None) -> None:
    """Start heartbeating for `pool` once the worker is ready; stop and leave when it shuts down."""

    def beat(node: str) -> None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        while not _stop.is_set():
            try:
                pools.heartbeat(client, pool, node, model_version=model_version)
            except redis.RedisError as exc:  # the broker is down: the worker reconnects, so do we
                log.warning("heartbeat for pool %s failed: %s", pool, exc)
            _stop.wait(pools.HEARTBEAT_S)
        try:
            pools.leave(client, pool, node)
        except redis.RedisError:
            pass

    def on_ready(sender=None, **_: object) -> None:
        node = getattr(sender, "hostname", None) or "worker"
        threading.Thread(target=beat, args=(node,), name="fb-heartbeat", daemon=True).start()

    def on_shutdown(**_: object) -> None:
        _stop.set()

    worker_ready.connect(on_ready, weak=False)
    worker_shutting_down.connect(on_shutdown, weak=False)
