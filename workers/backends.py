"""A worker process's models and backends, each loaded the first time a job asks for it (once per process).

Loaded backends are keyed by (model, backend). A process that only ever serves ONNX or INT8 jobs never imports
torch; one that only delivers callbacks loads nothing. FB_PRELOAD_BACKENDS loads some at process start instead
(the GPU pool loads all of its own, so a host without CUDA is found out before it takes work, unless
FB_GPU_FALLBACK=cpu lets it run them on the CPU).
"""
from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)


class Backends:
    """`get(model, name)`: the loaded backend, loading it now if this pool serves it; None if it does not."""

    def __init__(self, served: tuple[str, ...], catalogue, device: str, threads: int, fallback: str = "none"):
        self.served, self.catalogue = served, catalogue
        self.device, self.threads, self.fallback = device, threads, fallback
        self._loaded: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, model: str, name: str):
        if name not in self.served or model not in self.catalogue.manifests:
            return None
        key = (model, name)
        backend = self._loaded.get(key)
        if backend is None:
            with self._lock:
                backend = self._loaded.get(key)
                if backend is None:
                    backend = self._loaded[key] = self._load(model, name)
        return backend

    def _load(self, model: str, name: str):
        from pipeline.inference.backends import load_backend

        started = time.perf_counter()
        backend = load_backend(name, device=self.device, threads=self.threads,
                               manifest=self.catalogue.get(model), fallback=self.fallback)
        log.info("pid %s loaded %s/%s on %s (%s) in %.2f s", os.getpid(), model, name, backend.device,
                 getattr(backend, "precision", "fp32"), time.perf_counter() - started)
        return backend

    def loaded(self) -> list[str]:
        """The (model/backend) pairs this process has loaded so far."""
        return [f"{m}/{b}" for m, b in self._loaded]

    def __contains__(self, name: str) -> bool:
        return name in self.served
