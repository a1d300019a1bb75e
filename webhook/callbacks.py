"""Outbound completion callbacks: URL checks, HMAC signatures, and one recorded delivery attempt.

The worker's `deliver_callback` task calls `deliver`; the reconciler schedules the retries, so a retry
survives any restart (its time is kept in PostgreSQL, not in a broker's ETA queue).
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import time
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, func, insert, select, update

from pipeline.schema import api_keys, callback_attempts, callbacks, jobs

SIGNATURE_HEADER = "X-Fashion-Batch-Signature"


class CallbackURLError(ValueError):
    """A callback URL we refuse to call."""


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or that resolve to loopback, link-local or private addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackURLError("callback_url must be an absolute http:// or https:// URL")
    if len(url) > 2000:
        raise CallbackURLError("callback_url is too long")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror:
        raise CallbackURLError(f"callback_url host {parts.hostname!r} does not resolve") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global or addr.is_multicast:
            raise CallbackURLError(
                f"callback_url resolves to a non-public address ({addr}); loopback, link-local and private "
                "addresses are refused"
            )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """Check a signature header as a receiver would (also used by the tests)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), header)


def backoff_s(attempt: int) -> float:
    """Seconds to wait after the `attempt`-th failure: 10 s doubling, at most an hour."""
    return min(10.0 * 2 ** (attempt - 1), 3600.0)


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
