"""A pool with no live worker is refused at submit with 503 naming it; queueing anyway is a setting."""
from __future__ import annotations

import io
import time

import pytest
import redis

from pipeline import pools
from tests.helpers import garment_png, wait_for


@pytest.fixture()
def strict_client(settings):
    from webhook import create_app

    return create_app(settings.replace(queue_without_workers=False)).test_client()


def submit(client, key, pool):
    return client.post("/v1/jobs", data={"pool": pool, "backend": "onnx", "files": [(io.BytesIO(garment_png()),
                                                                                        "a.png")]},
                       headers={"X-API-Key": key}, content_type="multipart/form-data")


def test_a_pool_without_a_live_worker_is_refused_and_nothing_recorded(strict_client, api_key, worker, engine):
    # Given a real worker serving the cpu pool, and none serving gpu
    client = redis.Redis.from_url(worker.env["REDIS_URL"])
    wait_for(lambda: pools.live_workers(client, "cpu") > 0, 30, "the cpu worker's heartbeat")
    # When a job is sent to each pool
    refused, accepted = submit(strict_client, api_key, "gpu"), submit(strict_client, api_key, "cpu")
    # Then the gpu job is refused with a 503 naming the pool, and the cpu job accepted
    assert refused.status_code == 503 and "no worker serves the gpu pool" in refused.get_json()["error"]
    assert refused.headers["Retry-After"] == "30"
    assert accepted.status_code == 202
    listed = strict_client.get("/v1/jobs", headers={"X-API-Key": api_key}).get_json()["jobs"]
    assert [j["pool"] for j in listed] == ["cpu"]  # the refused job left no trace


def test_queueing_for_absent_workers_is_allowed_by_a_setting_and_the_status_says_so(client, api_key):
    # Given the setting that allows queueing for a pool no worker serves yet (the test environment sets it)
    resp = submit(client, api_key, "gpu")
    assert resp.status_code == 202
    # Then the status says what the job waits for
    status = client.get(resp.get_json()["status_url"], headers={"X-API-Key": api_key}).get_json()
    assert status["status"] == "queued" and status["waiting_for"] == "no worker serves the gpu pool yet"
    client.delete(resp.get_json()["status_url"], headers={"X-API-Key": api_key})


def test_heartbeats_expire(servers):
    client = redis.Redis.from_url(servers["redis_url"])
    now = time.time()
    pools.heartbeat(client, "test-pool", "w1", now=now - pools.LIVE_S - 1)
    pools.heartbeat(client, "test-pool", "w2", now=now)
    assert pools.live_workers(client, "test-pool", now=now) == 1
    pools.leave(client, "test-pool", "w2")
    assert pools.live_workers(client, "test-pool", now=now) == 0
