"""Beat must run as a single instance: a second scheduler would send every periodic task twice.

At start-up beat takes a Redis lock and refreshes it while it runs; a second beat finds it taken and exits.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis
from celery.signals import beat_init

log = logging.getLogger(__name__)
LOCK_KEY = "fb:beat:lock"
TTL_S = 60


def install(redis_url: str) -> None:
    """Make `celery beat` take the lock when it starts."""

    def on_beat_init(**_: object) -> None:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=5)
        me = f"{socket.gethostname()}:{os.getpid()}"
        if not client.set(LOCK_KEY, me, nx=True, ex=TTL_S) and client.get(LOCK_KEY) != me.encode():
            holder = (client.get(LOCK_KEY) or b"?").decode()
            log.error("another celery beat (%s) holds %s; exiting so periodic tasks are not sent twice",
                      holder, LOCK_KEY)
            os._exit(78)  # signal handlers' exceptions are swallowed by Celery; leave for real
        threading.Thread(target=_refresh, args=(client, me), daemon=True, name="beat-lock").start()

    beat_init.connect(on_beat_init, weak=False)


def _refresh(client: redis.Redis, me: str) -> None:
    # Refresh well within the TTL; if Redis was restarted and lost the key, take it back.
    while True:
        time.sleep(TTL_S / 3)
        try:
            if client.get(LOCK_KEY) in (None, me.encode()):
                client.set(LOCK_KEY, me, ex=TTL_S)
            else:
                log.error("the beat lock was taken by %s; exiting", client.get(LOCK_KEY))
                os._exit(78)
        except redis.RedisError as exc:
            log.warning("could not refresh the beat lock: %s", exc)
