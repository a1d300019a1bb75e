"""Helpers for the worker tests with real processes: submit a job over HTTP, poll it, start a beat."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
import zipfile

import requests
from sqlalchemy import func, select

from pipeline.store.schema import results
from tests.helpers import ROOT, garment_png, wait_for

FINAL = ("succeeded", "partial", "failed", "cancelled")


def start_beat(env: dict, name: str) -> subprocess.Popen:
    log = open(os.path.join(env["FB_DATA_DIR"], f"{name}.log"), "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
         "-s", os.path.join(env["FB_DATA_DIR"], f"{name}-schedule")],
        env={**os.environ, **env}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def submit(url: str, key: str, n: int, extra: dict[str, bytes] | None = None) -> dict:
    """A job of `n` small JPEGs (plus `extra` members) in one ZIP."""
    img = garment_png("shirt", (90, 110), fmt="JPEG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        for i in range(n):
            zf.writestr(f"img/{i:05d}.jpg", img)
    resp = requests.post(f"{url}/v1/jobs", headers={"X-API-Key": key}, timeout=120,
                         files=[("files", ("job.zip", buf.getvalue(), "application/zip"))])
    assert resp.status_code == 202, resp.text
    return resp.json()


def poll(job: dict, key: str) -> dict | None:
    try:
        return requests.get(job["status_url"], headers={"X-API-Key": key}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return None  # the database may be restarting


def wait_final(job: dict, key: str, timeout_s: float = 300) -> dict:
    return wait_for(lambda: (s := poll(job, key)) and s["status"] in FINAL and s, timeout_s, "the job to end", 0.5)


def row_counts(engine, job_id: str) -> tuple[int, int]:
    with engine.connect() as conn:
        return conn.execute(select(func.count(), func.count(func.distinct(results.c.seq)))
                            .where(results.c.job_id == uuid.UUID(job_id))).one()
