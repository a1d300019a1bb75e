"""End to end: HTTP API -> PostgreSQL -> Redis -> a real Celery worker process -> PostgreSQL -> HTTP API."""
from __future__ import annotations

import csv
import io

import pytest
import requests

from tests.helpers import garment_png, make_zip, phone_photo, wait_for

FINAL = ("succeeded", "partial", "failed", "cancelled")


@pytest.mark.parametrize("model", [None, "fmnist"], ids=["default-photo", "fmnist"])
def test_a_mixed_zip_is_labelled_item_by_item(live_url, worker, api_key, tmp_path, model):
    # Given a ZIP mixing good images (PNG, JPEG, WebP, in folders), a truncated JPEG and a text file,
    # plus a plain image uploaded beside it, for the default model (photo) or the Fashion-MNIST CNN
    jpeg = garment_png("trouser", (300, 400), fmt="JPEG")
    archive = make_zip(tmp_path / "batch.zip", {
        "tops/shirt.png": garment_png("shirt"),
        "bottoms/trouser.jpg": jpeg,
        "bottoms/trouser.webp": garment_png("trouser", fmt="WEBP"),
        "broken/truncated.jpg": jpeg[: len(jpeg) // 3],
        "readme.txt": b"these are my photos",
    })
    headers = {"X-API-Key": api_key}
    # When the files are posted to the API
    with archive.open("rb") as z:
        resp = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60,
                             data={"model": model} if model else {},
                             files=[("files", ("batch.zip", z, "application/zip")),
                                    ("files", ("single.png", garment_png("shirt"), "image/png"))])
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["total"] == 6
    # Then the worker finishes the job, labelling the good images and failing only the bad ones
    final = wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                     in FINAL and j, 120, "the job to end")
    assert final["status"] == "partial", final
    assert (final["done"], final["failed"]) == (4, 2)
    assert final["started_at"] and final["finished_at"]
    # And the job names its model and the version (manifest sha256) that labelled it
    assert final["model"] == (model or "photo") and len(final["model_version"]) == 64
    assert final["model_versions"] == {final["model_version"]: 4}
    items = {i["name"]: i for i in requests.get(job["results_url"], headers=headers, timeout=10).json()["items"]}
    assert set(items) == {"batch.zip/tops/shirt.png", "batch.zip/bottoms/trouser.jpg",
                          "batch.zip/bottoms/trouser.webp", "batch.zip/broken/truncated.jpg",
                          "batch.zip/readme.txt", "single.png"}
    for name in ("batch.zip/tops/shirt.png", "batch.zip/bottoms/trouser.jpg", "batch.zip/bottoms/trouser.webp",
                 "single.png"):
        item = items[name]
        assert item["error"] is None and 0 <= item["label"] <= 9 and item["class_name"]
        assert 0 < item["confidence"] <= 1 and abs(sum(item["probabilities"]) - 1) < 1e-3
        assert (item["model"], item["model_version"]) == (final["model"], final["model_version"])
    assert "truncated" in items["batch.zip/broken/truncated.jpg"]["error"]
    assert "not a supported image" in items["batch.zip/readme.txt"]["error"]
    assert items["batch.zip/readme.txt"]["label"] is None
    # And the CSV download says the same
    rows = list(csv.DictReader(io.StringIO(
        requests.get(job["results_url"], params={"format": "csv"}, headers=headers, timeout=10).text)))
    assert {r["name"]: r["class_name"] for r in rows} == {n: i["class_name"] or "" for n, i in items.items()}
    assert {(r["model"], r["model_version"]) for r in rows if r["class_name"]} == {(final["model"],
                                                                                    final["model_version"])}


def test_trousers_come_back_as_trousers(live_url, worker, api_key):
    # Given a plain dark trouser silhouette on white, the kind of shape the Fashion-MNIST CNN must get right
    headers = {"X-API-Key": api_key}
    resp = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60, data={"model": "fmnist"},
                         files=[("files", ("t.jpg", garment_png("trouser", (300, 400), fmt="JPEG"), "image/jpeg"))])
    job = resp.json()
    wait_for(lambda: requests.get(job["status_url"], headers=headers, timeout=10).json()["status"] in FINAL,
             60, "the job to end")
    item = requests.get(job["results_url"], headers=headers, timeout=10).json()["items"][0]
    # Then it is labelled Trouser
    assert item["class_name"] == "Trouser", item


def test_phone_formats_are_labelled_as_files_and_inside_zips(live_url, worker, api_key, tmp_path):
    # Given iPhone-style HEIC and AVIF photos of trousers stored on their side (EXIF orientation 6),
    # one of each uploaded as a file and one of each inside a ZIP, under names that do not say the format
    # (labelled by the Fashion-MNIST CNN, which these drawn silhouettes are made for)
    heic, avif = phone_photo("HEIC", orientation=6), phone_photo("AVIF", orientation=6)
    archive = make_zip(tmp_path / "phone.zip", {"IMG_0001": heic, "IMG_0002": avif})
    headers = {"X-API-Key": api_key}
    with archive.open("rb") as z:
        resp = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60, data={"model": "fmnist"}, files=[
            ("files", ("phone.zip", z, "application/zip")),
            ("files", ("IMG_0003.HEIC", heic, "image/heic")), ("files", ("IMG_0004.avif", avif, "image/avif"))])
    # When the worker has labelled them
    assert resp.status_code == 202, resp.text
    job = resp.json()
    final = wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                     in FINAL and j, 120, "the job to end")
    # Then every one is decoded upright and labelled Trouser, as the same shape in a JPEG is
    items = requests.get(job["results_url"], headers=headers, timeout=10).json()["items"]
    assert final["status"] == "succeeded", items
    assert [i["class_name"] for i in items] == ["Trouser"] * 4, items


def test_first_result_arrives_while_a_bigger_job_runs(live_url, worker, api_key, tmp_path):
    # Given a 300-image ZIP (several chunks: a small first chunk, then full ones) for the default photo model
    png = garment_png("shirt", (200, 260), fmt="JPEG")
    archive = make_zip(tmp_path / "many.zip", {f"img/{i:04d}.jpg": png for i in range(300)})
    headers = {"X-API-Key": api_key}
    with archive.open("rb") as z:
        job = requests.post(f"{live_url}/v1/jobs", headers=headers, timeout=60,
                            files=[("files", ("many.zip", z, "application/zip"))]).json()
    # When we poll, Then progress shows up before the end, and every item ends labelled
    wait_for(lambda: requests.get(job["status_url"], headers=headers, timeout=10).json()["done"] > 0, 60,
             "a first result")
    final = wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                     in FINAL and j, 180, "the job to end")
    assert final["status"] == "succeeded" and final["done"] == 300, final
