"""Which pools have a live worker: each worker records a heartbeat in Redis; the web service reads them.

A sorted set per pool (`fb:pool:<pool>`): member = the worker's node name, score = its last heartbeat (unix
time). A worker that stopped or was killed drops out once its heartbeat is older than `LIVE_S`.
"""
from __future__ import annotations

import time

import redis

HEARTBEAT_S = 5.0  # how often a worker records itself
LIVE_S = 30.0  # a heartbeat younger than this means the worker is alive


def _key(pool: str) -> str:
    return f"fb:pool:{pool}"


def heartbeat(client: redis.Redis, pool: str, node: str, now: float | None = None,
              model_version: str | None = None) -> None:
    """Record that `node` serves `pool` now (with the weights `model_version`: the versions of its models,
    comma-separated); forget long-silent workers."""
    now = time.time() if now is None else now
    with client.pipeline() as p:
        p.zadd(_key(pool), {node: now})
        p.zremrangebyscore(_key(pool), "-inf", now - 10 * LIVE_S)
        if model_version:
            p.hset(f"{_key(pool)}:versions", node, model_version)
        p.execute()


def live_versions(client: redis.Redis, pool: str, now: float | None = None) -> set[str]:
    """The model versions (of every model) the live workers of `pool` have."""
    now = time.time() if now is None else now
    nodes = client.zrangebyscore(_key(pool), now - LIVE_S, "+inf")
    versions = client.hmget(f"{_key(pool)}:versions", nodes) if nodes else []
    return {one for v in versions if v for one in v.decode().split(",")}  # a worker serves several models


def leave(client: redis.Redis, pool: str, node: str) -> None:
    """Forget `node` at once (a clean shutdown)."""
    client.zrem(_key(pool), node)


def live_workers(client: redis.Redis, pool: str, now: float | None = None) -> int:
    """How many workers of `pool` sent a heartbeat within LIVE_S."""
    now = time.time() if now is None else now
    return int(client.zcount(_key(pool), now - LIVE_S, "+inf"))
