"""API-key authentication and the per-key submission rate limit."""
from __future__ import annotations

import time

from flask import g, request
from redis.exceptions import RedisError

from pipeline.store.keys import authenticate
from webhook.errors import ApiError
from webhook.extensions import services

HEADER = "X-API-Key"


def require_key() -> None:
    """`before_request` hook: the request must carry a live key; it is kept in `g.api_key`."""
    record = authenticate(services().engine, request.headers.get(HEADER))
    if record is None:
        raise ApiError(401, f"missing, unknown or revoked API key (send it in the {HEADER} header)")
    g.api_key = record


def check_rate_limit() -> None:
    """Allow each key `rate_limit_per_minute` submissions per clock minute; answer 429 past that."""
    limit = services().settings.rate_limit_per_minute
    if limit <= 0:
        return
    now = time.time()
    window = int(now // 60)
    key = f"fb:rate:{g.api_key.id}:{window}"
    try:
        pipe = services().redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = pipe.execute()[0]
    except RedisError:
        raise ApiError(503, "the job queue (Redis) is unavailable; try again shortly", {"Retry-After": "10"})
    if count > limit:
        retry = max(1, int(60 - now % 60))
        raise ApiError(429, f"rate limit: at most {limit} job submissions per minute per key",
                       {"Retry-After": str(retry)})
