"""A worker process's backends, each loaded the first time a job asks for it (once per process).

A process that only ever serves ONNX or INT8 jobs never imports torch; one that only delivers callbacks loads
nothing. FB_PRELOAD_BACKENDS loads some at process start instead (the GPU pool loads all of its own, so a host
without CUDA is found out before it takes work).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)


class Backends:
    """`get(name)`: the loaded backend, loading it now if this pool serves it; None if it does not."""

    def __init__(self, served: tuple[str, ...], weights_dir: Path, manifest, device: str, threads: int):
        self.served, self.weights_dir, self.manifest = served, weights_dir, manifest
        self.device, self.threads = device, threads
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, name: str):
        if name not in self.served:
            return None
        backend = self._loaded.get(name)
        if backend is None:
            with self._lock:
                backend = self._loaded.get(name)
                if backend is None:
                    backend = self._loaded[name] = self._load(name)
        return backend

    def _load(self, name: str):
        from pipeline.inference.backends import load_backend

        started = time.perf_counter()
        backend = load_backend(name, self.weights_dir, device=self.device, threads=self.threads,
                               manifest=self.manifest)
        log.info("pid %s loaded %s on %s in %.2f s", os.getpid(), name, self.device, time.perf_counter() - started)
        return backend

    def loaded(self) -> list[str]:
        """The backends this process has loaded so far."""
        return list(self._loaded)

    def __contains__(self, name: str) -> bool:
        return name in self.served
