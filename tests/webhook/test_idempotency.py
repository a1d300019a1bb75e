"""Idempotency-Key on POST /v1/jobs: a resend is the same job, a reused key with another upload is 422."""
from __future__ import annotations

import io
import threading
import uuid

import requests

from pipeline.store.keys import create_key
from tests.helpers import garment_png


def post(client, key: str, idem: str | None, *images: bytes):
    headers = {"X-API-Key": key, **({"Idempotency-Key": idem} if idem else {})}
    data = {"files": [(io.BytesIO(b), f"{i}.png") for i, b in enumerate(images)]}
    return client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")


def test_a_resend_with_the_same_key_is_the_same_job(client, api_key):
    # Given a submission with an Idempotency-Key, accepted
    idem = str(uuid.uuid4())
    first = post(client, api_key, idem, garment_png(), garment_png("trouser"))
    assert first.status_code == 202
    # When the client, unsure it got through, sends the same upload with the same key
    again = post(client, api_key, idem, garment_png(), garment_png("trouser"))
    # Then it gets the same job back (200, marked as a replay), and no second job exists
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    listed = client.get("/v1/jobs", headers={"X-API-Key": api_key}).get_json()["jobs"]
    assert [j["id"] for j in listed] == [first.get_json()["id"]]


def test_the_same_key_with_another_upload_is_422_and_keys_are_per_api_key(client, api_key, engine):
    idem = str(uuid.uuid4())
    assert post(client, api_key, idem, garment_png()).status_code == 202
    # When the key comes back with different photos / Then it is refused, naming the earlier job
    other = post(client, api_key, idem, garment_png("trouser"))
    assert other.status_code == 422 and "already used for another upload" in other.get_json()["error"]
    # And another API key may use the same key for a job of its own
    assert post(client, create_key(engine, "idem-other")[1], idem, garment_png()).status_code == 202


def test_two_racing_twins_make_one_job(live_url, api_key):
    # Given two identical submissions with one key, sent at the same moment
    idem, answers = str(uuid.uuid4()), []
    body = garment_png()

    def send():
        answers.append(requests.post(f"{live_url}/v1/jobs", headers={"X-API-Key": api_key, "Idempotency-Key": idem},
                                     files=[("files", ("a.png", body, "image/png"))], timeout=60))

    threads = [threading.Thread(target=send) for _ in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    # Then one made the job and the other got that same job
    assert sorted(a.status_code for a in answers) == [200, 202], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1


def test_a_malformed_key_is_refused(client, api_key):
    assert post(client, api_key, "x" * 300, garment_png()).status_code == 400
