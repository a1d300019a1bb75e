"""The benchmark's production path: a private local stack, one ZIP job through it, and the per-image baseline.

The stack is `fashion-batch up` (gunicorn web, prefork Celery worker with one process per core, beat, Flower)
on its own embedded PostgreSQL and Redis under a separate data folder and free ports, so a user's running
stack is never touched.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import requests
from sqlalchemy import Engine, func, select

from pipeline.settings import Settings, load_settings
from pipeline.store import reports
from pipeline.store.schema import chunks, jobs, results
from pipeline.tools import launcher


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Stack:
    """A running private stack: its settings, the launcher's state (URLs, key) and the database engine."""

    settings: Settings
    state: dict
    engine: Engine


@contextmanager
def private_stack(data_dir: Path, overrides: dict[str, str] | None = None, timeout_s: float = 600,
                  storage: str = "local") -> Iterator[Stack]:
    """Start `fashion-batch up --detach --storage STORAGE` on embedded servers under `data_dir`; stop it after."""
    from pipeline.store.engine import get_engine

    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "FB_URL", "FB_API_KEY", "FB_STORAGE_URL")}
    env.update({"FB_DATA_DIR": str(data_dir), "FB_STORAGE_DIR": str(data_dir / "storage"),
                "FB_WEB_PORT": str(_free_port()), "FB_FLOWER_PORT": str(_free_port()),
                "FB_BENCHMARK_EVERY_S": "86400"}, **(overrides or {}))  # no periodic benchmark mid-run
    settings = load_settings(env)
    log = (data_dir / "bench-launcher.log")
    data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run([sys.executable, "-m", "pipeline.tools.cli", "up", "--detach", "--storage", storage], env=env,
                       stdout=out,
                       stderr=subprocess.STDOUT, check=True, timeout=timeout_s)
    try:
        state = launcher.read_state(settings)
        if state is None:
            raise RuntimeError(f"the private stack did not start; see {log}")
        yield Stack(settings, state, get_engine(state["database_url"]))
    finally:
        launcher.down(settings)


class _TimedBody:
    """Wraps a streamed request body and notes when its last byte was handed to the connection."""

    def __init__(self, body):
        self._body, self.sent_at = body, None

    def __len__(self) -> int:
        return len(self._body)

    def __iter__(self):
        yield from self._body
        self.sent_at = time.time()


def run_job(stack: Stack, zip_path: Path, backend: str, labels: list[int], timeout_s: float = 3600,
            model: str | None = None) -> dict:
    """Upload `zip_path` as one job and wait for its last result row; return the timings and accuracy."""
    from pipeline.tools.upload import (
        Multipart,  # the CLI client's streamed upload: the path users take
    )

    body = _TimedBody(Multipart({"backend": backend, **({"model": model} if model else {})}, [zip_path]))
    started = time.time()
    resp = requests.post(f"{stack.state['web_url']}/v1/jobs", data=body, timeout=timeout_s,
                         headers={"X-API-Key": stack.state["api_key"], "Content-Type": body._body.content_type})
    accepted = time.time()
    resp.raise_for_status()
    job_id = uuid.UUID(resp.json()["id"])
    deadline = time.monotonic() + timeout_s
    while True:
        with stack.engine.connect() as conn:
            status = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id)).scalar_one()
        if status not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} did not finish within {timeout_s:.0f} s")
        time.sleep(0.05)
    with stack.engine.connect() as conn:
        first, last, n, failed = conn.execute(
            select(func.min(results.c.created_at), func.max(results.c.created_at), func.count(),
                   func.count(results.c.error)).where(results.c.job_id == job_id)).one()
        got = dict(conn.execute(select(results.c.seq, results.c.label).where(results.c.job_id == job_id)).all())
        c_first, c_last, c_busy = conn.execute(
            select(func.min(chunks.c.started_at), func.max(chunks.c.finished_at),
                   func.sum(func.extract("epoch", chunks.c.finished_at - chunks.c.started_at)))
            .where(chunks.c.job_id == job_id, chunks.c.status == "done")).one()
    correct = sum(1 for seq, label in enumerate(labels) if got.get(seq) == label)
    return {
        "job_id": str(job_id), "status": status, "images": n, "failed": failed,
        "upload_s": body.sent_at - started, "accepted_s": accepted - body.sent_at,
        "first_result_s": first.timestamp() - body.sent_at, "total_s": last.timestamp() - started,
        "img_s": n / (last.timestamp() - started), "accuracy": correct / len(labels),
        "chunk_latencies_s": sorted(reports.chunk_latencies(stack.engine, job_id)),
        # Where the time went: before the first chunk started (upload, scan, enqueue), and the share of the
        # worker processes' time spent inside chunks between the first start and the last finish.
        "first_chunk_start_s": c_first.timestamp() - started,
        "workers_busy_share": float(c_busy) / (stack.settings.pool_processes
                                               * (c_last - c_first).total_seconds()),
    }


def run_baseline(stack: Stack, zip_path: Path, count: int, labels: list[int], warmup: int = 5,
                 model: str | None = None) -> dict:
    """POST the first `count` images one by one to /v1/classify (a sequential client), as version one did."""
    url, session = f"{stack.state['web_url']}/v1/classify", requests.Session()
    form = {"model": model} if model else {}
    session.headers["X-API-Key"] = stack.state["api_key"]
    with zipfile.ZipFile(zip_path) as zf:
        members = [(i.filename, zf.read(i)) for i in zf.infolist() if not i.is_dir()][:count]
    for name, data in members[:warmup]:  # each web process loads its model on its first request
        session.post(url, data=form, files={"file": (name, data, "image/jpeg")}, timeout=60).raise_for_status()
    correct, started = 0, time.perf_counter()
    for seq, (name, data) in enumerate(members):
        resp = session.post(url, data=form, files={"file": (name, data, "image/jpeg")}, timeout=60)
        resp.raise_for_status()
        correct += resp.json()["label"] == labels[seq]
    elapsed = time.perf_counter() - started
    return {"images": len(members), "img_s": len(members) / elapsed, "accuracy": correct / len(members)}


def pool_processes(stack: Stack) -> list:
    """The Celery pool (child) processes of the stack's cpu worker (not those of its control worker)."""
    import psutil

    found = []
    for proc in psutil.Process(stack.state["pid"]).children(recursive=True):
        cmd = f" {' '.join(proc.cmdline())} "
        if " celery " in cmd and " worker " in cmd and " -Q cpu " in cmd and proc.ppid() != stack.state["pid"]:
            found.append(proc)
    return found


def wait_until_loaded(stack: Stack, timeout_s: float = 300) -> None:
    """Block until every pool process has logged that its models are loaded (so no run pays for loading)."""
    log = Path(stack.state["logs"]) / "worker.log"
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [p.pid for p in pool_processes(stack)]
        text = log.read_text(errors="replace") if log.exists() else ""
        if pids and all(f"pid {pid} loaded" in text for pid in pids):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the worker's pool processes did not load their models; see {log}")
        time.sleep(0.2)


def worker_memory(stack: Stack) -> list[dict]:
    """RSS, USS and PSS (MB) of each Celery pool process (each holds every backend its pool serves)."""
    out = []
    for proc in pool_processes(stack):
        mem = proc.memory_full_info()
        out.append({"pid": proc.pid, "rss_mb": mem.rss / 2**20, "uss_mb": mem.uss / 2**20,
                    "pss_mb": getattr(mem, "pss", 0) / 2**20})
    return out


def memory_by_kind(stack: Stack) -> dict[str, float]:
    """The largest RSS (MB) among the stack's processes of each kind: web, cpu worker, control worker, beat."""
    import psutil

    kinds = {"web": " gunicorn ", "cpu_worker": " -Q cpu ", "control_worker": " -Q control ", "beat": " beat "}
    out: dict[str, float] = {}
    for proc in psutil.Process(stack.state["pid"]).children(recursive=True):
        cmd = f" {' '.join(proc.cmdline())} "
        for kind, marker in kinds.items():
            # Pool (child) processes do the work: for workers, count those, not their parent.
            if marker in cmd and (not kind.endswith("_worker") or proc.ppid() != stack.state["pid"]):
                out[kind] = max(out.get(kind, 0.0), proc.memory_info().rss / 2**20)
    return out
