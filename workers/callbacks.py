"""Delivering completion callbacks: one recorded, signed attempt at a time.

The worker's `deliver_callback` task calls `deliver`; the reconciler schedules the retries, so a retry
survives any restart (its time is kept in PostgreSQL, not in a broker's ETA queue).
"""
from __future__ import annotations

import json
import time

import requests
from sqlalchemy import Engine, func, insert, select, update

from pipeline.callbacks import (
    SIGNATURE_HEADER,
    CallbackURLError,
    backoff_s,
    check_url,
    sign,
)
from pipeline.store.schema import api_keys, callback_attempts, callbacks, jobs


def deliver(engine: Engine, callback_id: int, *, allow_private: bool, timeout_s: float, max_attempts: int) -> str:
    """Make one delivery attempt and record it; return the callback's status afterwards."""
    with engine.begin() as conn:
        row = conn.execute(
            select(callbacks, api_keys.c.signing_secret)
            .join(jobs, jobs.c.id == callbacks.c.job_id)
            .outerjoin(api_keys, api_keys.c.id == jobs.c.api_key_id)
            .where(callbacks.c.id == callback_id).with_for_update(of=callbacks, skip_locked=True)
        ).mappings().first()
        if row is None or row["status"] != "pending":
            return row["status"] if row else "missing"
        attempt = row["attempts"] + 1
        # Claim the attempt first, so a concurrent reconciler pass does not send the same attempt twice.
        conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(
            attempts=attempt, next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, backoff_s(attempt))))
    body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
    code, error, started = None, None, time.perf_counter()
    try:
        check_url(row["url"], allow_private=allow_private)  # again: DNS may have changed since submission
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "fashion-batch/1"}
        if row["signing_secret"]:
            headers[SIGNATURE_HEADER] = sign(row["signing_secret"], ts, body)
        resp = requests.post(row["url"], data=body, headers=headers, timeout=timeout_s, allow_redirects=False)
        code = resp.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except (requests.RequestException, CallbackURLError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    status = "delivered" if error is None else ("failed" if attempt >= max_attempts else "pending")
    with engine.begin() as conn:
        conn.execute(insert(callback_attempts).values(
            callback_id=callback_id, attempt=attempt, status_code=code, error=error,
            duration_ms=(time.perf_counter() - started) * 1000))
        conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(
            status=status, last_status_code=code, last_error=error,
            delivered_at=func.now() if status == "delivered" else None))
    return status
