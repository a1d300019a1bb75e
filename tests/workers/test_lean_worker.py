"""Lean worker processes: a backend loads on first use by a job; one that served ONNX jobs has no torch in it."""
from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import requests

from tests.helpers import garment_png, wait_for

FINAL = ("succeeded", "partial", "failed", "cancelled")


def libraries(pid: int) -> str:
    """The shared libraries mapped into a process (what it has imported, native code included)."""
    return Path(f"/proc/{pid}/maps").read_text()


def run_job(live_url: str, api_key: str, backend: str, model: str = "fmnist") -> dict:
    headers = {"X-API-Key": api_key}
    job = requests.post(f"{live_url}/v1/jobs", headers=headers, data={"backend": backend, "model": model}, timeout=60,
                        files=[("files", ("a.png", garment_png(), "image/png"))]).json()
    return wait_for(lambda: (j := requests.get(job["status_url"], headers=headers, timeout=10).json())["status"]
                    in FINAL and j, 120, f"the {backend} job")


def test_a_process_that_served_onnx_jobs_never_loaded_torch(make_worker, live_url, api_key):
    # Given a fresh worker with one pool process that serves every CPU backend
    worker = make_worker({"FB_PRELOAD_BACKENDS": ""}, concurrency=1, name="lean")
    (pid,) = worker.pool_pids()
    assert "libonnxruntime" not in libraries(pid) and "libtorch" not in libraries(pid)  # nothing loaded at start
    # When ONNX jobs run until it has served one (another test worker may take some of them)
    for _ in range(20):
        assert run_job(live_url, api_key, "onnx")["status"] == "succeeded"
        if "libonnxruntime" in libraries(pid):
            break
    assert "libonnxruntime" in libraries(pid), "the lean worker never got a job"
    # Then it loaded ONNX Runtime only, never torch, and stays small
    rss = psutil.Process(pid).memory_info().rss / 2**20
    print(f"\ncpu worker pool process after ONNX jobs: RSS {rss:.0f} MB, torch loaded: "
          f"{'libtorch' in libraries(pid)}")
    assert "libtorch" not in libraries(pid)


@pytest.mark.parametrize("backend", ["onnx", "int8"])
def test_a_process_that_served_photo_jobs_never_loaded_torch_and_stays_small(make_worker, live_url, api_key, backend):
    # Given a fresh worker with one pool process that serves every CPU backend
    worker = make_worker({"FB_PRELOAD_BACKENDS": ""}, concurrency=1, name=f"lean-photo-{backend}")
    (pid,) = worker.pool_pids()
    # When photo-model jobs (EfficientNet-Lite0, 224 px letterbox) run on ONNX Runtime until it has served one
    for _ in range(20):
        assert run_job(live_url, api_key, backend, model="photo")["status"] == "succeeded"
        if "libonnxruntime" in libraries(pid):
            break
    assert "libonnxruntime" in libraries(pid), "the lean worker never got a job"
    # Then it never imported torch, and its memory stays under the photo worker's budget (350 MB)
    rss = psutil.Process(pid).memory_info().rss / 2**20
    print(f"\ncpu worker pool process after photo {backend} jobs: RSS {rss:.0f} MB")
    assert "libtorch" not in libraries(pid)
    assert rss < 350, f"the photo worker process uses {rss:.0f} MB"


def test_a_control_worker_loads_no_model(make_worker):
    worker = make_worker({"FB_WORKER_POOL": "control"}, concurrency=1, queues="control", name="control")
    (pid,) = worker.pool_pids()
    maps = libraries(pid)
    assert "libtorch" not in maps and "libonnxruntime" not in maps
    print(f"\ncontrol worker pool process: RSS {psutil.Process(pid).memory_info().rss / 2**20:.0f} MB")
