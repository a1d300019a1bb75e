"""Several hosts: the web service and a worker with different local folders and no shared filesystem, talking
only through PostgreSQL, Redis and S3 (a real SeaweedFS; loopback stands in for the network).

The module has a Redis and an S3 server of its own, so that no other test's worker takes its chunks and the
S3 server can be stopped mid-job.
"""
from __future__ import annotations

import io
import zipfile

import pytest
import requests

from pipeline.settings import load_settings
from pipeline.tools.services import EmbeddedRedis, EmbeddedSeaweedFS
from tests.conftest import serve
from tests.helpers import WorkerProcess, garment_png, wait_for

FINAL = ("succeeded", "partial", "failed", "cancelled")


@pytest.fixture(scope="module")
def hosts(env, seaweedfs, tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    redis = EmbeddedRedis(root / "redis")
    s3 = EmbeddedSeaweedFS(root / "s3", access_key=seaweedfs["credentials"]["AWS_ACCESS_KEY_ID"],
                           secret_key=seaweedfs["credentials"]["AWS_SECRET_ACCESS_KEY"])
    shared = {**env, "REDIS_URL": redis.start(detached=True), "FB_S3_ENDPOINT_URL": s3.start(),
              "FB_STORAGE_URL": "s3://fashion-batch/multi-host/", "FB_CPU_BACKENDS": "onnx",
              "FB_DEFAULT_BACKEND": "onnx", "FB_CHUNK_SIZE": "100", "FB_FIRST_CHUNK_SIZE": "16",
              "FB_S3_SOURCE_BUCKETS": "fb-sources"}
    web = {**shared, "FB_DATA_DIR": str(root / "web"), "FB_STORAGE_DIR": str(root / "web" / "storage")}
    worker = {**shared, "FB_DATA_DIR": str(root / "worker"), "FB_STORAGE_DIR": str(root / "worker" / "storage")}
    yield {"web": web, "worker": worker, "root": root, "s3": s3}
    s3.stop()
    redis.stop()


@pytest.fixture(scope="module")
def web_url(hosts):
    from webhook import create_app

    yield from serve(create_app(load_settings(hosts["web"])))


def _zip(n: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"photos/{i:04d}.png", garment_png("shirt" if i % 2 else "trouser", (60 + i % 40, 80)))
    return buf.getvalue()


def _submit(url: str, key: str, body: bytes) -> dict:
    resp = requests.post(f"{url}/v1/jobs", headers={"X-API-Key": key}, timeout=120,
                         files=[("files", ("photos.zip", body, "application/zip"))])
    assert resp.status_code == 202, resp.text
    return resp.json()


def _ended(job: dict, key: str, timeout_s: float) -> dict:
    headers = {"X-API-Key": key}
    return wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                    in FINAL and j, timeout_s, "the job to end", interval_s=0.5)


def _client(hosts):
    import boto3

    s3 = hosts["s3"]
    return boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=s3.access_key, aws_secret_access_key=s3.secret_key)


def _objects(hosts, job_id: str) -> list:
    listing = _client(hosts).list_objects_v2(Bucket="fashion-batch", Prefix=f"multi-host/jobs/{job_id}/")
    return listing.get("Contents", [])


def _results(job: dict, key: str) -> list[dict]:
    return requests.get(job["results_url"], headers={"X-API-Key": key}, params={"limit": 10000},
                        timeout=30).json()["items"]


def test_a_500_image_zip_job_crosses_hosts_through_s3_only(hosts, web_url, api_key):
    # Given a worker on "another host": its own data and storage folders, nothing shared with the web's
    worker = WorkerProcess(hosts["worker"], concurrency=2, name="far")
    worker.start()
    try:
        # When a 500-image ZIP is uploaded to the web service
        job = _submit(web_url, api_key, _zip(500))
        assert job["total"] == 500
        # Then the worker labels every item, reading the members from S3 ...
        final = _ended(job, api_key, 300)
        objects_gone = wait_for(lambda: _objects(hosts, job["id"]) == [], 30, "the job's objects to be deleted")
    finally:
        worker.stop()
    assert (final["status"], final["done"], final["failed"]) == ("succeeded", 500, 0), final
    items = _results(job, api_key)
    assert len(items) == 500 and all(i["label"] is not None and i["error"] is None for i in items)
    assert "workers.tasks.drain" in worker.log() and "succeeded" in worker.log()
    # ... no part ever sat in either host's folder, and the job's objects were deleted when it ended
    for host in ("web", "worker"):
        jobs_dir = hosts["root"] / host / "storage" / "jobs"
        assert not jobs_dir.exists() or list(jobs_dir.iterdir()) == []
    assert objects_gone


def test_a_job_from_objects_in_a_bucket_never_passes_through_the_web(hosts, web_url, engine):
    from pipeline.store.keys import create_key

    api_key = create_key(engine, "overnight", ["s3://fb-sources/overnight/"])[1]
    # Given 40 photos and a ZIP of 60 more under a prefix of an allowed bucket
    s3 = _client(hosts)
    try:
        s3.create_bucket(Bucket="fb-sources")
    except s3.exceptions.ClientError:
        pass
    for i in range(40):
        s3.put_object(Bucket="fb-sources", Key=f"overnight/loose/{i:03d}.png", Body=garment_png(size=(70 + i, 90)))
    s3.put_object(Bucket="fb-sources", Key="overnight/batch.zip", Body=_zip(60))
    worker = WorkerProcess(hosts["worker"], concurrency=2, name="source")
    worker.start()
    try:
        # When a job is asked for the prefix
        resp = requests.post(f"{web_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                             json={"source": "s3://fb-sources/overnight/"})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        final = _ended(job, api_key, 240)
    finally:
        worker.stop()
    # Then all 100 are labelled, and the source's objects are left where they were
    assert (final["status"], final["total"], final["done"], final["failed"]) == ("succeeded", 100, 100, 0), final
    assert len(s3.list_objects_v2(Bucket="fb-sources", Prefix="overnight/")["Contents"]) == 41


@pytest.mark.slow
def test_an_s3_outage_in_a_worker_is_retried_not_failed(hosts, web_url, api_key):
    # Given a 200-image job in S3, queued for a worker not yet started
    job = _submit(web_url, api_key, _zip(200))
    # When the S3 server stops before the worker reads anything, and comes back a while later
    hosts["s3"].stop()
    worker = WorkerProcess(hosts["worker"], concurrency=2, name="outage")
    worker.start()
    try:
        wait_for(lambda: "deferred" in worker.log(), 60, "the worker to meet the outage")
        hosts["s3"].start()
        final = _ended(job, api_key, 240)
    finally:
        worker.stop()
    # Then every item is labelled: the outage delayed chunks, it failed none
    assert (final["status"], final["done"], final["failed"]) == ("succeeded", 200, 0), final
    assert "deferred" in worker.log()  # given back for FB_STORAGE_RETRY_S, not counted as an attempt
