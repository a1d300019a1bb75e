"""Delivering completion callbacks: recorded attempts with backoff, signed bodies, real delivery by a worker."""
from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import select

from pipeline.callbacks import SIGNATURE_HEADER, verify
from pipeline.items import ItemSpec, Outcome
from pipeline.store import jobs
from pipeline.store.keys import create_key
from pipeline.store.schema import callback_attempts, callbacks
from tests.helpers import garment_png, wait_for
from workers.callbacks import deliver


class Receiver:
    """A real HTTP endpoint on loopback that answers `codes` in turn (then 200) and records each call."""

    def __init__(self, codes: list[int] | None = None):
        self.codes, self.calls = list(codes or []), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                self.send_response(receiver.codes.pop(0) if receiver.codes else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()


@pytest.fixture()
def receiver():
    made: list[Receiver] = []

    def make(codes=None) -> Receiver:
        made.append(Receiver(codes))
        return made[-1]

    yield make
    for r in made:
        r.close()


def finished_job(engine, key_id, url: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    ids = jobs.create_job(engine, job_id=job_id, api_key_id=key_id, backend="onnx", pool="cpu", callback_url=url,
                          specs=[ItemSpec("a.png", "part-00000"), ItemSpec("b.png", "part-00000")],
                          chunk_size=10, first_chunk_size=10)
    work = jobs.claim_chunk(engine, ids[0])
    assert jobs.write_results(engine, work, [Outcome(0, label=3, confidence=0.9, probabilities=[0.1] * 10),
                                             Outcome(1, error="corrupt")]) == "partial"
    return job_id


def test_failed_deliveries_are_retried_with_backoff_and_every_attempt_recorded(engine, receiver):
    # Given a finished job whose callback endpoint fails twice, then accepts
    record, _ = create_key(engine, "callbacks")
    hook = receiver([500, 503])
    job_id = finished_job(engine, record.id, hook.url)
    with engine.connect() as conn:
        cb = conn.execute(select(callbacks).where(callbacks.c.job_id == job_id)).mappings().one()
    assert cb["status"] == "pending" and cb["payload"]["status"] == "partial"
    # When delivery is attempted three times
    outcomes = []
    for _ in range(3):
        outcomes.append(deliver(engine, cb["id"], allow_private=True, timeout_s=5, max_attempts=5))
        with engine.connect() as conn:
            row = conn.execute(select(callbacks).where(callbacks.c.id == cb["id"])).mappings().one()
        if outcomes[-1] == "pending":
            # the next attempt waits: 10 s after the first failure, 20 s after the second
            wait = (row["next_attempt_at"] - row["created_at"]).total_seconds()
            assert wait >= 9
    # Then the first two stay pending, the third is delivered, and each attempt is on record
    assert outcomes == ["pending", "pending", "delivered"]
    with engine.connect() as conn:
        codes = conn.execute(select(callback_attempts.c.status_code).where(callback_attempts.c.callback_id == cb["id"])
                             .order_by(callback_attempts.c.attempt)).scalars().all()
    assert codes == [500, 503, 200]
    # And every request carried a valid signature made with the key's signing secret
    for headers, body in hook.calls:
        assert verify(record.signing_secret, headers[SIGNATURE_HEADER], body)
    assert json.loads(hook.calls[-1][1]) == {"id": str(job_id), "status": "partial", "total": 2, "done": 1,
                                             "failed": 1}


def test_delivery_gives_up_after_the_attempt_limit(engine, receiver):
    record, _ = create_key(engine, "callbacks-down")
    hook = receiver([500] * 10)
    job_id = finished_job(engine, record.id, hook.url)
    with engine.connect() as conn:
        cb_id = conn.execute(select(callbacks.c.id).where(callbacks.c.job_id == job_id)).scalar()
    results = [deliver(engine, cb_id, allow_private=True, timeout_s=5, max_attempts=2) for _ in range(3)]
    assert results == ["pending", "failed", "failed"] and len(hook.calls) == 2


def test_a_job_through_the_worker_ends_with_a_signed_callback(live_url, worker, engine, receiver):
    # Given a key and a listening endpoint
    record, key = create_key(engine, "e2e-callback")
    hook = receiver()
    # When a job with a callback_url runs to the end
    resp = requests.post(f"{live_url}/v1/jobs", headers={"X-API-Key": key}, data={"callback_url": hook.url},
                         files=[("files", ("a.png", garment_png(), "image/png"))], timeout=30)
    assert resp.status_code == 202, resp.text
    # Then the endpoint receives one signed summary, and the delivery is recorded
    wait_for(lambda: hook.calls, 60, "the callback")
    headers, body = hook.calls[0]
    assert verify(record.signing_secret, headers[SIGNATURE_HEADER], body)
    assert json.loads(body)["status"] == "succeeded" and json.loads(body)["id"] == resp.json()["id"]
    def delivered() -> bool:
        with engine.connect() as conn:
            return conn.execute(select(callbacks.c.status).where(
                callbacks.c.job_id == uuid.UUID(resp.json()["id"]))).scalar() == "delivered"

    wait_for(delivered, 10, "the delivery record")
