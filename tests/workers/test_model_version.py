"""The model version (sha256 of the weights' manifest) on every result; a job finishes on the weights it began."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from tests.helpers import garment_png, make_zip, wait_for

FINAL = ("succeeded", "partial", "failed", "cancelled")


def version_of(weights: Path, model: str) -> str:
    return hashlib.sha256((weights / model / "manifest.json").read_bytes()).hexdigest()


def other_weights(weights: Path, tmp_path: Path, model: str = "fmnist") -> Path:
    """The same models, `model` under another manifest (as a redeploy of retrained weights would have)."""
    copy = tmp_path / "weights-b"
    shutil.copytree(weights, copy)
    manifest = json.loads((copy / model / "manifest.json").read_text())
    manifest["training"] = {**manifest.get("training", {}), "note": "a later export"}
    (copy / model / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return copy


def submit(live_url, api_key, n: int, tmp_path) -> dict:
    archive = make_zip(tmp_path / f"{uuid.uuid4().hex}.zip", {f"{i}.png": garment_png() for i in range(n)})
    with archive.open("rb") as z:
        # The workers these tests start serve ONNX only; the CNN's default (INT8) is not theirs.
        return requests.post(f"{live_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60,
                             data={"backend": "onnx", "model": "fmnist"},
                             files=[("files", ("v.zip", z, "application/zip"))]).json()


def final(job, api_key) -> dict:
    return wait_for(lambda: (j := requests.get(job["status_url"], headers={"X-API-Key": api_key},
                                               timeout=10).json())["status"] in FINAL and j, 120, "the job")


@pytest.mark.parametrize("model", ["photo", "fmnist"])
def test_every_result_names_the_model_and_weights_that_gave_it(live_url, worker, api_key, env, weights_dir, model):
    # Given a job for one of the models / When the worker (which serves both) has labelled it
    expected = version_of(Path(env.get("FB_WEIGHTS_DIR", weights_dir)), model)
    job = requests.post(f"{live_url}/v1/jobs", headers={"X-API-Key": api_key}, timeout=60, data={"model": model},
                        files=[("files", ("a.png", garment_png(), "image/png"))]).json()
    status = final(job, api_key)
    # Then the job is pinned to that model's version, and its status, JSON and CSV results name both
    assert status["model"] == model and status["model_version"] == expected
    assert status["model_versions"] == {expected: 1} and "model_note" not in status
    item = requests.get(job["results_url"], headers={"X-API-Key": api_key}, timeout=10).json()["items"][0]
    assert (item["model"], item["model_version"]) == (model, expected)
    rows = list(csv.DictReader(io.StringIO(requests.get(job["results_url"], params={"format": "csv"},
                                                        headers={"X-API-Key": api_key}, timeout=10).text)))
    assert (rows[0]["model"], rows[0]["model_version"]) == (model, expected)


def test_a_job_is_finished_by_the_weights_that_began_it(make_worker, live_url, api_key, env, weights_dir, tmp_path):
    # Given two more workers on the same pool with different weights (a rolling deploy half done)
    base = Path(env.get("FB_WEIGHTS_DIR", weights_dir))
    newer = other_weights(base, tmp_path)
    make_worker({"FB_WEIGHTS_DIR": str(base), "FB_CPU_BACKENDS": "onnx"}, concurrency=1, name="v1")
    make_worker({"FB_WEIGHTS_DIR": str(newer), "FB_CPU_BACKENDS": "onnx"}, concurrency=1, name="v2")
    # When jobs of many small chunks run across them
    statuses = [final(submit(live_url, api_key, 80, tmp_path), api_key) for _ in range(3)]
    # Then every job's results come from one version only
    for status in statuses:
        assert status["status"] == "succeeded" and len(status["model_versions"]) == 1, status


def test_a_pinned_job_says_when_no_live_worker_has_its_weights(client, api_key, engine):
    job = client.post("/v1/jobs", data={"pool": "gpu", "backend": "onnx",
                                        "files": [(io.BytesIO(garment_png()), "a.png")]},
                      headers={"X-API-Key": api_key}, content_type="multipart/form-data").get_json()
    with engine.begin() as conn:
        conn.execute(text("update jobs set model_version = :v where id = :j"), {"v": "ab" * 32, "j": job["id"]})
    status = client.get(job["status_url"], headers={"X-API-Key": api_key}).get_json()
    assert "has model version abababababab" in status["waiting_for"]
    client.delete(job["status_url"], headers={"X-API-Key": api_key})
