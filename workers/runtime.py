"""Per-process worker state: models, database engine and archive reader, created after fork.

The parent worker process only checks the weights' checksums (cheap, no torch import); each pool process
loads its backends once in `worker_process_init`, or on first use under the solo pool.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from sqlalchemy import Engine

from pipeline import db
from pipeline.settings import Settings
from pipeline.storage import ItemReader

log = logging.getLogger(__name__)
_settings: Settings | None = None
_state: "Runtime | None" = None


@dataclass
class Runtime:
    """What a pool process keeps between tasks."""

    settings: Settings
    pool: str
    device: str
    engine: Engine
    backends: dict
    manifest: object
    reader: ItemReader
    pid: int


def worker_pool() -> str:
    """The pool this worker serves, from FB_WORKER_POOL (cpu or gpu)."""
    pool = os.environ.get("FB_WORKER_POOL", "cpu")
    if pool not in ("cpu", "gpu"):
        raise RuntimeError(f"FB_WORKER_POOL must be cpu or gpu, got {pool!r}")
    return pool


def install(app: Celery, settings: Settings) -> None:
    """Connect the signal handlers that build per-process state."""
    global _settings
    _settings = settings
    worker_init.connect(_check_weights, weak=False)
    worker_process_init.connect(_on_process_init, weak=False)
    worker_process_shutdown.connect(_on_process_shutdown, weak=False)


def _check_weights(**_: object) -> None:
    # Refuse to start at all (rather than crash every pool process) when a weights file was tampered with.
    from pipeline.manifest import load_manifest, verified_path

    manifest = load_manifest(_settings.weights_dir)
    for name in _settings.backends_for(worker_pool()):
        verified_path(manifest, name)


def _on_process_init(**_: object) -> None:
    current()


def _on_process_shutdown(**_: object) -> None:
    if _state is not None:
        _state.reader.close()


def current() -> Runtime:
    """This process's runtime, built on first call (the models load here, never in the parent)."""
    global _state
    if _state is not None and _state.pid == os.getpid():
        return _state
    from pipeline.backends import load_backend
    from pipeline.manifest import load_manifest

    s = settings()
    db.dispose_inherited()
    pool = worker_pool()
    device = "cuda" if pool == "gpu" else "cpu"
    threads = int(os.environ.get("FB_INFER_THREADS", "1"))
    started = time.perf_counter()
    manifest = load_manifest(s.weights_dir)
    backends = {
        name: load_backend(name, s.weights_dir, device=device, threads=threads, manifest=manifest)
        for name in s.backends_for(pool)
    }
    log.info("pid %s loaded %s on %s in %.2f s", os.getpid(), ", ".join(backends), device,
             time.perf_counter() - started)
    _state = Runtime(
        settings=s, pool=pool, device=device, engine=engine(),
        backends=backends, manifest=manifest, reader=ItemReader(s.storage_dir, s.limits),
        pid=os.getpid(),
    )
    return _state


def settings() -> Settings:
    """The worker's settings (no models needed)."""
    if _settings is None:
        raise RuntimeError("workers.runtime.install() was not called")
    return _settings


def engine() -> Engine:
    """This process's database engine (no models needed)."""
    return db.get_engine(settings().database_url)
