"""Delivering completion callbacks: recorded attempts with backoff, signed bodies, real delivery by a worker."""
from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import select, text

from pipeline.callbacks import verify
from pipeline.items import ItemSpec, Outcome
from pipeline.store import jobs, leases
from pipeline.store.keys import create_key
from pipeline.store.schema import callback_attempts, callbacks
from tests.helpers import garment_png, wait_for
from workers.callbacks import deliver


class Receiver:
    """A real HTTP endpoint on loopback that answers `codes` in turn (then 200) and records each call.

    A code may be `(code, seconds)`: that answer comes after a pause.
    """

    def __init__(self, codes: list[int] | None = None):
        self.codes, self.calls = list(codes or []), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                answer = receiver.codes.pop(0) if receiver.codes else 200
                code, delay = answer if isinstance(answer, tuple) else (answer, 0)
                time.sleep(delay)
                self.send_response(code)
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
    ids = jobs.create_job(engine, job_id=job_id, api_key_id=key_id, backend="onnx", pool="store-test",
                          callback_url=url,
                          specs=[ItemSpec("a.png", "part-00000"), ItemSpec("b.png", "part-00000")],
                          chunk_size=10, first_chunk_size=10)
    work = leases.claim(engine, ids[0], "test:1", 60)
    assert jobs.write_results(engine, work, [Outcome(0, label=3, confidence=0.9, probabilities=[0.1] * 10),
                                             Outcome(1, error="corrupt")]) == "partial"
    return job_id


def due_now(engine, callback_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("update callbacks set next_attempt_at = now() where id = :c"), {"c": callback_id})


def test_a_duplicate_message_waits_for_the_backoff(engine, receiver):
    # Given a callback whose first attempt failed (the next is due in 10 s)
    record, _ = create_key(engine, "callbacks-duplicate")
    hook = receiver([500] * 10)
    cb = callback_of(engine, finished_job(engine, record.id, hook.url))
    assert deliver(engine, cb, allow_private=True, timeout_s=5, max_attempts=8) == "pending"
    # When duplicate messages arrive at once / Then no attempt is made before its time
    assert [deliver(engine, cb, allow_private=True, timeout_s=5, max_attempts=8) for _ in range(7)] == ["not-due"] * 7
    assert len(hook.calls) == 1


def test_callbacks_have_a_queue_and_worker_apart_from_scheduling(settings):
    from pipeline.broker import CALLBACKS, create_celery
    from pipeline.tools.launcher import commands

    # Given the Celery configuration and the local launcher's worker for callbacks
    app = create_celery(settings)
    # Then deliveries are routed to their own queue, which the control worker (-c 1) does not consume
    assert app.conf.task_routes["workers.tasks.deliver_callback"] == {"queue": CALLBACKS}
    assert app.conf.task_routes["workers.tasks.dispatch"] == {"queue": "control"}
    cmd = commands(settings)["callbacks"]
    assert cmd[cmd.index("-Q") + 1] == CALLBACKS and cmd[cmd.index("-P") + 1] == "threads"


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
        due_now(engine, cb["id"])  # as if the backoff had passed
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
        assert verify(record.signing_secret, headers, body)
    # And every attempt carried the same event id, so the receiver can drop duplicates
    assert len({headers["webhook-id"] for headers, _ in hook.calls}) == 1
    assert json.loads(hook.calls[-1][1]) == {"id": str(job_id), "status": "partial", "total": 2, "done": 1,
                                             "failed": 1, "cancelled": 0}


def test_delivery_gives_up_after_the_attempt_limit(engine, receiver):
    record, _ = create_key(engine, "callbacks-down")
    hook = receiver([500] * 10)
    job_id = finished_job(engine, record.id, hook.url)
    with engine.connect() as conn:
        cb_id = conn.execute(select(callbacks.c.id).where(callbacks.c.job_id == job_id)).scalar()
    results = [due_now(engine, cb_id) or deliver(engine, cb_id, allow_private=True, timeout_s=5, max_attempts=2)
               for _ in range(3)]
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
    assert verify(record.signing_secret, headers, body)
    assert json.loads(body)["status"] == "succeeded" and json.loads(body)["id"] == resp.json()["id"]
    def delivered() -> bool:
        with engine.connect() as conn:
            return conn.execute(select(callbacks.c.status).where(
                callbacks.c.job_id == uuid.UUID(resp.json()["id"]))).scalar() == "delivered"

    wait_for(delivered, 10, "the delivery record")



def callback_of(engine, job_id) -> int:
    with engine.connect() as conn:
        return conn.execute(select(callbacks.c.id).where(callbacks.c.job_id == job_id)).scalar()


def test_deliveries_forced_at_once_make_one_request(engine, receiver):
    # Given a finished job whose receiver takes a second to answer
    record, _ = create_key(engine, "callbacks-twice")
    hook = receiver([(200, 1.0)])
    cb = callback_of(engine, finished_job(engine, record.id, hook.url))
    # When four deliveries of it are started at the same moment (the job's end and the reconciler, say)
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(
        deliver(engine, cb, allow_private=True, timeout_s=5, max_attempts=5))) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # Then the receiver got one request, and the others saw an attempt in flight
    assert len(hook.calls) == 1
    assert sorted(outcomes).count("delivered") == 1 and set(outcomes) <= {"delivered", "in-flight", "busy"}


def test_a_slow_failed_attempt_never_undoes_a_later_success(engine, receiver):
    # Given a first attempt whose receiver answers 500 only after two seconds
    record, _ = create_key(engine, "callbacks-late")
    hook = receiver([(500, 2.0), 200])
    cb = callback_of(engine, finished_job(engine, record.id, hook.url))
    slow: list[str] = []
    first = threading.Thread(target=lambda: slow.append(
        deliver(engine, cb, allow_private=True, timeout_s=10, max_attempts=5)))
    first.start()
    wait_for(lambda: hook.calls, 5, "the first attempt to reach the receiver")
    # When its time in flight is over (as if it had hung) and a second attempt is delivered meanwhile
    with engine.begin() as conn:
        conn.execute(text("update callbacks set in_flight_until = now() - interval '1 second', "
                          "next_attempt_at = now() where id = :c"), {"c": cb})
    assert deliver(engine, cb, allow_private=True, timeout_s=10, max_attempts=5) == "delivered"
    first.join()
    # Then the late failure is recorded as an attempt but leaves the callback delivered
    assert slow == ["delivered"]
    with engine.connect() as conn:
        row = conn.execute(select(callbacks).where(callbacks.c.id == cb)).mappings().one()
        codes = conn.execute(select(callback_attempts.c.status_code)
                             .where(callback_attempts.c.callback_id == cb)).scalars().all()
    assert row["status"] == "delivered" and sorted(codes) == [200, 500]


def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(engine):
    import socket

    # Given a receiver that accepts, then sends its answer one byte every half second, for ever
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def drip():
        conn, _ = server.accept()
        conn.recv(65536)
        for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 1000:
            if stop.is_set():
                break
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            time.sleep(0.5)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    record, _ = create_key(engine, "callbacks-drip")
    cb = callback_of(engine, finished_job(engine, record.id, f"http://127.0.0.1:{server.getsockname()[1]}/hook"))
    # When it is delivered with a 2 s deadline
    started = time.monotonic()
    outcome = deliver(engine, cb, allow_private=True, timeout_s=2, max_attempts=5)
    took = time.monotonic() - started
    stop.set()
    server.close()
    # Then the attempt ends at the deadline, as a failure to retry later
    assert outcome == "pending" and took < 4, took
