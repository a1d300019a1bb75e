"""POST /v1/jobs with uploads kept in S3, and jobs from objects already in a bucket, against a real S3 server
(SeaweedFS), PostgreSQL and Redis; these tests stop at the queue (tests/test_multi_host.py runs workers)."""
from __future__ import annotations

import io
import socket

import pytest

from pipeline.settings import load_settings
from tests.helpers import garment_png, make_zip
from webhook import create_app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _client(env: dict[str, str]):
    return create_app(load_settings(env)).test_client()


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


@pytest.fixture()
def source_key(engine) -> str:
    """A key granted the whole `fb-sources` bucket (and a bucket that does not exist, for a refusal test)."""
    from pipeline.store.keys import create_key

    return create_key(engine, "sources", ["s3://fb-sources/", "s3://fb-missing-bucket/"])[1]


def _jobs(client, key) -> list:
    return client.get("/v1/jobs", headers={"X-API-Key": key}).get_json()["jobs"]


def test_an_upload_goes_to_the_bucket_and_leaves_nothing_on_the_web_host(s3_env, seaweedfs, api_key, tmp_path):
    # Given a web service whose store is S3
    client = _client(s3_env)
    archive = make_zip(tmp_path / "a.zip", {f"{i}.png": garment_png() for i in range(3)})
    # When a ZIP and an image are uploaded
    resp = client.post("/v1/jobs", headers={"X-API-Key": api_key}, content_type="multipart/form-data",
                       data={"files": [(archive.open("rb"), "a.zip"), (io.BytesIO(garment_png()), "b.png")]})
    # Then the job is accepted, its two parts are objects under the job's prefix, and the web host keeps no copy
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    prefix = s3_env["FB_STORAGE_URL"][len("s3://fashion-batch/"):] + f"jobs/{job['id']}/"
    assert sorted(_keys(seaweedfs["client"], "fashion-batch", prefix)) == [prefix + "part-00000", prefix + "part-00001"]
    assert list((tmp_path / "web-storage" / "jobs").iterdir()) == []


def test_a_job_from_a_source_lists_its_prefix(s3_env, seaweedfs, source_key, tmp_path):
    # Given photos and a ZIP under a prefix of an allowed bucket, and a file that is neither
    s3 = seaweedfs["client"]
    prefix = f"listed-{tmp_path.name}/"
    s3.put_object(Bucket="fb-sources", Key=prefix + "shoes/a.jpg", Body=garment_png(fmt="JPEG"))
    s3.put_object(Bucket="fb-sources", Key=prefix + "b.png", Body=garment_png())
    s3.put_object(Bucket="fb-sources", Key=prefix + "notes.txt", Body=b"not a photo")
    s3.upload_file(str(make_zip(tmp_path / "z.zip", {"x/1.png": garment_png(), "2.png": garment_png()})),
                   "fb-sources", prefix + "pack.zip")
    client = _client(s3_env)
    # When a job is asked for that prefix
    resp = client.post("/v1/jobs", headers={"X-API-Key": source_key}, json={"source": f"s3://fb-sources/{prefix}"})
    # Then it holds the images and the ZIP's members, named by their keys under the prefix
    assert resp.status_code == 202, resp.get_json()
    items = client.get(resp.get_json()["results_url"], headers={"X-API-Key": source_key}).get_json()["items"]
    assert [i["name"] for i in items] == ["b.png", "shoes/a.jpg", "pack.zip/x/1.png", "pack.zip/2.png"]


def test_sidecar_files_do_not_count_against_the_limit_and_too_many_images_are_refused(s3_env, seaweedfs, source_key,
                                                                                   tmp_path):
    # Given ten photos, each with a sidecar file (.xmp), under a prefix; and a job limit of ten images
    s3 = seaweedfs["client"]
    prefix = f"sidecars-{tmp_path.name}/"
    for i in range(10):
        s3.put_object(Bucket="fb-sources", Key=f"{prefix}{i:02d}.jpg", Body=garment_png(fmt="JPEG"))
        s3.put_object(Bucket="fb-sources", Key=f"{prefix}{i:02d}.xmp", Body=b"<x:xmpmeta/>")
    client = _client({**s3_env, "FB_MAX_ITEMS": "10", "FB_MAX_PARTS": "2"})
    # When a job is asked for the prefix / Then it holds all ten photos (the sidecars were skipped, not counted)
    resp = client.post("/v1/jobs", headers={"X-API-Key": source_key}, json={"source": f"s3://fb-sources/{prefix}"})
    assert resp.status_code == 202 and resp.get_json()["total"] == 10, resp.get_json()
    # When one more photo makes eleven / Then the job is refused, saying the limit, rather than cut short
    s3.put_object(Bucket="fb-sources", Key=f"{prefix}10.jpg", Body=garment_png(fmt="JPEG"))
    resp = client.post("/v1/jobs", headers={"X-API-Key": source_key}, json={"source": f"s3://fb-sources/{prefix}"})
    assert resp.status_code == 413 and "at most 10" in resp.get_json()["error"], resp.get_json()


def test_sources_are_granted_per_key_and_a_refusal_names_no_bucket(s3_env, seaweedfs, engine, api_key, tmp_path):
    from pipeline.store.keys import create_key

    # Given two allowed buckets, photos under two teams' prefixes, and a key granted team A's prefix only
    s3 = seaweedfs["client"]
    for team in ("team-a", "team-b"):
        s3.put_object(Bucket="fb-sources", Key=f"{tmp_path.name}/{team}/1.jpg", Body=garment_png(fmt="JPEG"))
    client = _client({**s3_env, "FB_S3_SOURCE_BUCKETS": "fb-sources,fb-secret-archive"})
    team_a = create_key(engine, "team-a", [f"s3://fb-sources/{tmp_path.name}/team-a/"])[1]

    def ask(key: str, prefix: str):
        return client.post("/v1/jobs", headers={"X-API-Key": key}, json={"source": f"s3://fb-sources/{prefix}"})

    # When it asks for its own prefix / Then it gets a job
    assert ask(team_a, f"{tmp_path.name}/team-a/").status_code == 202
    # When it, or a key granted nothing, asks for another prefix or the bucket's root / Then each is refused,
    # and the refusal lists no allowed bucket
    for key, prefix in ((team_a, f"{tmp_path.name}/team-b/"), (team_a, ""), (api_key, f"{tmp_path.name}/team-a/")):
        resp = ask(key, prefix)
        assert resp.status_code == 400 and "not an allowed source" in resp.get_json()["error"]
        assert "fb-secret-archive" not in resp.get_json()["error"]


@pytest.mark.parametrize("source, overrides, status, message", [
    ("s3://not-allowed/photos/", {}, 400, "not an allowed source"),
    ("https://example.com/photos/", {}, 400, "s3://"),
    ("s3://fb-missing-bucket/photos/", {"FB_S3_SOURCE_BUCKETS": "fb-sources,fb-missing-bucket"}, 400, "no bucket"),
    ("s3://fb-sources/nothing-here/", {}, 400, "no images or ZIP"),
    ("s3://fb-sources/photos/", {"FB_S3_ENDPOINT_URL": "http://127.0.0.1:{port}"}, 503, "object store"),
])
def test_a_bad_source_is_refused_and_nothing_is_recorded(s3_env, source_key, source, overrides, status, message):
    # Given a web service (with an endpoint nobody listens on, for the last case)
    env = {**s3_env, **{k: v.format(port=_closed_port()) for k, v in overrides.items()}}
    client = _client(env)
    # When a job is asked for a source it must not or cannot read
    resp = client.post("/v1/jobs", headers={"X-API-Key": source_key}, json={"source": source})
    # Then the answer says why, and no job was recorded
    assert resp.status_code == status, resp.get_json()
    assert message in resp.get_json()["error"]
    assert _jobs(client, source_key) == []


def test_an_unreachable_store_refuses_an_upload_with_503(s3_env, api_key, tmp_path):
    # Given a web service whose S3 endpoint nobody listens on
    client = _client({**s3_env, "FB_S3_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"})
    # When an image is uploaded
    resp = client.post("/v1/jobs", headers={"X-API-Key": api_key}, content_type="multipart/form-data",
                       data={"files": [(io.BytesIO(garment_png()), "a.png")]})
    # Then the answer is 503 with Retry-After, nothing is recorded, and the web host keeps no copy
    assert resp.status_code == 503, resp.get_json()
    assert "object store" in resp.get_json()["error"] and resp.headers["Retry-After"]
    assert "127.0.0.1" not in resp.get_json()["error"]  # nothing of the store's internals
    assert _jobs(client, api_key) == []
    assert list((tmp_path / "web-storage" / "jobs").iterdir()) == []


def test_healthz_reports_the_object_store(s3_env):
    # Given web services on S3, one whose endpoint answers and one whose endpoint nobody listens on
    up = _client(s3_env).get("/healthz")
    down = _client({**s3_env, "FB_S3_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}).get("/healthz")
    # Then the first is healthy, and the second answers 503 saying the store is unreachable
    assert (up.status_code, up.get_json()["storage"]) == (200, "ok")
    assert down.status_code == 503 and down.get_json()["storage"].startswith("unreachable")
    # And it says nothing of the store's internals (its endpoint, botocore's words)
    assert "127.0.0.1" not in down.get_data(as_text=True) and "http" not in down.get_data(as_text=True)


def _noise_png(seed: int, side: int = 1400) -> bytes:
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def test_a_large_part_is_uploaded_in_parts_while_it_arrives(s3_env, seaweedfs, api_key, tmp_path):
    # Given a stored ZIP of ~18 MB (three incompressible photos), over the 8 MiB part size
    import zipfile

    archive = make_zip(tmp_path / "big.zip", {f"{i}.png": _noise_png(i) for i in range(3)}, zipfile.ZIP_STORED)
    assert archive.stat().st_size > 16 * 1024**2
    client = _client(s3_env)
    # When it is uploaded
    resp = client.post("/v1/jobs", headers={"X-API-Key": api_key}, content_type="multipart/form-data",
                       data={"files": [(archive.open("rb"), "big.zip")]})
    # Then the object in the bucket is the ZIP, byte for byte, and no multipart upload is left open
    assert resp.status_code == 202, resp.get_json()
    s3 = seaweedfs["client"]
    prefix = s3_env["FB_STORAGE_URL"][len("s3://fashion-batch/"):]
    key = f"{prefix}jobs/{resp.get_json()['id']}/part-00000"
    assert s3.get_object(Bucket="fashion-batch", Key=key)["Body"].read() == archive.read_bytes()
    assert s3.list_multipart_uploads(Bucket="fashion-batch", Prefix=prefix).get("Uploads", []) == []


def test_a_refused_large_upload_leaves_nothing_in_the_bucket(s3_env, seaweedfs, api_key, tmp_path):
    # Given a ~18 MB ZIP that holds no image at all
    import zipfile

    archive = make_zip(tmp_path / "docs.zip", {f"{i}.bin": _noise_png(i)[100:] for i in range(3)}, zipfile.ZIP_STORED)
    client = _client(s3_env)
    # When it is uploaded
    resp = client.post("/v1/jobs", headers={"X-API-Key": api_key}, content_type="multipart/form-data",
                       data={"files": [(archive.open("rb"), "docs.zip")]})
    # Then it is refused, and neither an object nor an open multipart upload is left behind
    assert resp.status_code == 400 and "contains no images" in resp.get_json()["error"]
    s3 = seaweedfs["client"]
    prefix = s3_env["FB_STORAGE_URL"][len("s3://fashion-batch/"):]
    assert _keys(s3, "fashion-batch", prefix) == []
    assert s3.list_multipart_uploads(Bucket="fashion-batch", Prefix=prefix).get("Uploads", []) == []


def test_upload_memory_and_threads_are_bounded_per_process_not_per_file(s3_env, api_key):
    import threading

    from pipeline.blobs.s3_store import UPLOAD_SLOTS

    # Given a request of six files just over the 8 MiB part size (each sends one part while the request arrives)
    app = create_app(load_settings(s3_env))
    senders: set[int] = set()
    app.extensions["fashion_batch"].store.s3.meta.events.register(
        "before-call.s3.UploadPart", lambda **_: senders.add(threading.get_ident()))
    body = b"\0" * (8 * 1024**2 + 1024)
    # When it is uploaded
    resp = app.test_client().post("/v1/jobs", headers={"X-API-Key": api_key}, content_type="multipart/form-data",
                                  data={"files": [(io.BytesIO(body), f"{i}.bin") for i in range(6)]})
    # Then the parts were sent by the process's few upload threads (at most UPLOAD_SLOTS parts, 32 MiB, in
    # memory at once), not by a pool of threads per file
    assert resp.status_code == 400, resp.get_json()  # (nothing in it is an image)
    assert 1 <= len(senders) <= UPLOAD_SLOTS < 6
