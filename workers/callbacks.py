"""Delivering completion callbacks: one signed attempt in flight per callback, each recorded.

The `deliver_callback` task calls `deliver`; the reconciler schedules the retries, so a retry survives any
restart (its time is kept in PostgreSQL, not in a broker's ETA queue). Runs in the callbacks worker, which
loads no model, on the `callbacks` queue: a slow receiver holds one of its threads, never for longer than the
deadline, and never the control queue's dispatch or housekeeping. An attempt is only made once its
`next_attempt_at` has come, so a duplicate message cannot spend the attempts ahead of the backoff.
"""
from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, insert, select, update

from pipeline.callbacks import CallbackURLError, backoff_s, check_url, sign
from pipeline.store.schema import api_keys, callback_attempts, callbacks, jobs

MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is read this far, then dropped


class _Pinned:
    """HTTP(S) to the address `check_url` vetted, with the URL's host name for the Host header, SNI and TLS."""

    def __init__(self, scheme: str, host: str, address: str, port: int, timeout_s: float):
        tls = ssl.create_default_context() if scheme == "https" else None
        if tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout_s, context=tls)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout_s)

        def connect() -> None:  # instead of resolving `host` again
            sock = socket.create_connection((address, port), timeout_s)
            conn.sock = tls.wrap_socket(sock, server_hostname=host) if tls is not None else sock

        conn.connect = connect
        self.conn = conn

    def abort(self) -> None:
        """Cut the connection (the deadline passed); the request in progress fails with an OSError."""
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def post(url: str, address: str, body: bytes, headers: dict[str, str], deadline_s: float) -> int:
    """POST `body` to `url` at `address`; the whole exchange is cut off after `deadline_s`. Returns the status."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    pinned = _Pinned(parts.scheme, parts.hostname, address, port, timeout_s=deadline_s)
    timer = threading.Timer(deadline_s, pinned.abort)
    timer.start()
    started = time.monotonic()
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pinned.conn.request("POST", path, body=body, headers=headers)
        resp = pinned.conn.getresponse()
        resp.read(MAX_RESPONSE_BYTES)  # what a receiver says is not needed; a flood is not read
        if time.monotonic() - started >= deadline_s:
            raise TimeoutError(f"no complete answer within {deadline_s:g} s")
        return resp.status
    finally:
        timer.cancel()
        pinned.conn.close()


def event_id(payload: dict) -> str:
    """The event's id: the same on every attempt, so a receiver can drop a duplicate delivery."""
    return f"job_{payload['id']}_{payload['status']}"


def deliver(engine: Engine, callback_id: int, *, allow_private: bool, timeout_s: float, max_attempts: int) -> str:
    """Make one delivery attempt, unless one is already in flight, and record it; return the status after."""
    with engine.begin() as conn:
        row = conn.execute(
            select(callbacks, api_keys.c.signing_secret, func.now().label("now"))
            .join(jobs, jobs.c.id == callbacks.c.job_id)
            .outerjoin(api_keys, api_keys.c.id == jobs.c.api_key_id)
            .where(callbacks.c.id == callback_id).with_for_update(of=callbacks, skip_locked=True)
        ).mappings().first()
        if row is None:
            return "busy"  # another attempt is claiming it this instant (or the callback is gone)
        if row["status"] != "pending":
            return row["status"]
        if row["in_flight_until"] is not None and row["in_flight_until"] > row["now"]:
            return "in-flight"
        if row["next_attempt_at"] is not None and row["next_attempt_at"] > row["now"]:
            return "not-due"  # a duplicate message: the backoff stands, the reconciler sends it when due
        attempt = row["attempts"] + 1
        # Claim the attempt first: no second attempt starts while this one may still be talking to the receiver.
        conn.execute(update(callbacks).where(callbacks.c.id == callback_id).values(
            attempts=attempt, in_flight_until=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, timeout_s + 5),
            next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, backoff_s(attempt))))
    body = json.dumps(row["payload"], separators=(",", ":"), sort_keys=True).encode()
    code, error, started = None, None, time.perf_counter()
    try:
        addresses = check_url(row["url"], allow_private=allow_private)  # again: DNS may have changed
        headers = {"Content-Type": "application/json", "User-Agent": "fashion-batch/1"}
        if row["signing_secret"]:
            headers.update(sign(row["signing_secret"], event_id(row["payload"]), int(time.time()), body))
        code = post(row["url"], addresses[0], body, headers, timeout_s)
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except (OSError, http.client.HTTPException, CallbackURLError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    status = "delivered" if error is None else ("failed" if attempt >= max_attempts else "pending")
    with engine.begin() as conn:
        conn.execute(insert(callback_attempts).values(
            callback_id=callback_id, attempt=attempt, status_code=code, error=error,
            duration_ms=(time.perf_counter() - started) * 1000))
        # Only this attempt's own outcome, and only if no later attempt has started or finished meanwhile.
        done = conn.execute(update(callbacks).where(callbacks.c.id == callback_id, callbacks.c.attempts == attempt,
                                                    callbacks.c.status == "pending").values(
            status=status, last_status_code=code, last_error=error, in_flight_until=None,
            delivered_at=func.now() if status == "delivered" else None)).rowcount
        if not done:
            status = conn.execute(select(callbacks.c.status).where(callbacks.c.id == callback_id)).scalar()
    return status
