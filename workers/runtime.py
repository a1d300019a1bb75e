"""Per-process worker state: models, database engine and archive reader, created after fork.

The parent worker process only checks the weights' checksums (cheap, no torch import); each pool process
loads its backends once in `worker_process_init`, or on first use under the solo pool.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown
from sqlalchemy import Engine

from pipeline.blobs import ItemReader, open_reader
from pipeline.settings import Settings, SettingsError, require
from pipeline.store import engine as db
from pipeline.store import leases
from workers.backends import Backends

log = logging.getLogger(__name__)
_settings: Settings | None = None
_FAULTS: dict[str, str] = {}
_state: "Runtime | None" = None


@dataclass
class Runtime:
    """What a pool process keeps between tasks."""

    settings: Settings
    pool: str
    device: str
    engine: Engine
    backends: Backends  # loaded on first use, per (model, backend)
    catalogue: object  # every model's manifest (pipeline.inference.catalogue.Catalogue)
    reader: ItemReader
    pid: int
    holder: str  # this process's name as a chunk lease holder

    def pinned_versions(self) -> dict[str, str] | None:
        """{model: version} this process labels with, when jobs are pinned to their weights (else None)."""
        return self.catalogue.versions() if self.settings.pin_model_version else None

    def plan(self, job_id, specs) -> None:
        """Tell the reader which items come next (neighbouring archive members are fetched together)."""
        self.reader.plan(job_id, specs)

    def read(self, job_id, spec) -> bytes:
        """An item's bytes (through the test-only fault hook when one is configured)."""
        if _FAULTS:
            _inject_fault(spec.name)
        return self.reader.read(job_id, spec)


def worker_pool() -> str:
    """The pool this worker serves (FB_WORKER_POOL: cpu or gpu)."""
    return settings().worker_pool


def install(app: Celery, settings: Settings) -> None:
    """Connect the signal handlers that build per-process state."""
    global _settings
    _settings = settings
    if settings.env == "test":
        # Fault injection for the fault-tolerance tests only: items whose name contains the marker kill or
        # hang the pool process that reads them (no image reliably crashes a decoder on demand).
        for mode, marker in (("crash", settings.fault_crash_on), ("hang", settings.fault_hang_on)):
            if marker:
                _FAULTS[mode] = marker
    worker_init.connect(_check_weights, weak=False)
    worker_process_init.connect(_on_process_init, weak=False)
    worker_process_shutdown.connect(_on_process_shutdown, weak=False)


def _check_weights(**_: object) -> None:
    # Refuse to start at all, rather than fail every task, when the weights are missing, unreadable or
    # tampered with. Celery swallows a signal handler's exceptions, but not SystemExit.
    from pipeline.inference.catalogue import load_catalogue
    from pipeline.inference.manifest import WeightsError, verified_path

    try:
        require(_settings, "worker")
    except SettingsError as exc:
        raise SystemExit(f"refusing to start: {exc}") from None
    if worker_pool() == "control":
        return  # loads no model
    try:
        for manifest in load_catalogue(_settings.weights_dir).manifests.values():
            for name in _settings.backends_for(worker_pool()):
                verified_path(manifest, name)
    except WeightsError as exc:
        log.critical("refusing to start: %s", exc)
        raise SystemExit(f"refusing to start: {exc}") from None


def _on_process_init(**_: object) -> None:
    try:
        current()
    except Exception as exc:  # noqa: BLE001 - any failure here means this worker cannot do its job
        # A pool that cannot load its models (no CUDA on a GPU worker, a broken install) would fail every
        # task it takes; stop the whole worker instead, saying why, so the deployment notices.
        log.critical("refusing to run: this %s pool process cannot load its models: %s", worker_pool(), exc)
        os.kill(os.getppid(), signal.SIGTERM)
        os._exit(1)


def _on_process_shutdown(**_: object) -> None:
    if _state is not None:
        _state.reader.close()


def current() -> Runtime:
    """This process's runtime, built on first call (the models load here, never in the parent)."""
    global _state
    if _state is not None and _state.pid == os.getpid():
        return _state
    from pipeline.inference.catalogue import load_catalogue

    s = settings()
    db.dispose_inherited()
    pool = worker_pool()
    device = "cuda" if pool == "gpu" else "cpu"
    catalogue = load_catalogue(s.weights_dir)
    served = s.backends_for(pool) if pool != "control" else ()  # control: callbacks, dispatch, housekeeping
    if served:
        from pipeline.images.preprocess import use_threads

        use_threads(s.infer_threads)
    backends = Backends(served, catalogue, device, s.infer_threads, fallback=s.gpu_fallback)
    # Loaded on first use, but the GPU pool's at start (a host without CUDA must not take GPU work, unless
    # FB_GPU_FALLBACK=cpu) and any FB_PRELOAD_BACKENDS (so a benchmark's first job does not pay for loading).
    for name in served if pool == "gpu" else [b for b in s.preload_backends if b in served]:
        for model in catalogue.names:
            backends.get(model, name)
    log.info("pid %s ready for the %s pool (%s; loaded so far: %s)", os.getpid(), pool, ", ".join(served) or "no models",
             ", ".join(backends.loaded()) or "none")
    _state = Runtime(
        settings=s, pool=pool, device=device, engine=engine(),
        backends=backends, catalogue=catalogue, reader=open_reader(s),
        pid=os.getpid(), holder=leases.holder_id(),
    )
    return _state


def _inject_fault(name: str) -> None:
    if _FAULTS.get("crash") and _FAULTS["crash"] in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if _FAULTS.get("hang") and _FAULTS["hang"] in name:
        time.sleep(3600)


def model_version() -> str | None:
    """The versions (manifest sha256s, comma-separated) of the models this worker serves; None if unreadable."""
    from pipeline.inference.catalogue import load_catalogue
    from pipeline.inference.manifest import WeightsError

    if _settings is None or _settings.worker_pool == "control":
        return None
    try:
        return ",".join(load_catalogue(_settings.weights_dir).versions().values())
    except WeightsError:
        return None  # the worker refuses to start, saying why (worker_init)


def settings() -> Settings:
    """The worker's settings (no models needed)."""
    if _settings is None:
        raise RuntimeError("workers.runtime.install() was not called")
    return _settings


def engine() -> Engine:
    """This process's database engine (no models needed)."""
    return db.get_engine(settings().database_url)
