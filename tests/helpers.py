"""Helpers shared by tests: worker processes, polling, and building test images and archives."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


class WorkerProcess:
    """A real `celery worker` subprocess with its own log file."""

    def __init__(self, env: dict[str, str], *, concurrency: int = 1, queues: str = "cpu,control,callbacks",
                 name: str = "w", extra: list[str] | None = None):
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.concurrency, self.queues, self.name, self.extra = concurrency, queues, name, extra or []
        self.log_path = Path(env["FB_DATA_DIR"]) / f"worker-{name}-{time.time_ns()}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180.0) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", self.queues,
               "-c", str(self.concurrency), "-n", f"{self.name}-{os.getpid()}-{time.time_ns()}@%h",
               "--without-gossip", "--without-mingle", "--loglevel", "INFO", *self.extra]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(lambda: b" ready." in self.log_path.read_bytes() or self.proc.poll() is not None,
                 timeout_s, "worker start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()[-5000:]}")

    def pool_pids(self) -> list[int]:
        """The pids of the pool (child) processes doing the work."""
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def garment_png(kind: str = "shirt", size: tuple[int, int] = (120, 160), background: int = 255,
                fmt: str = "PNG") -> bytes:
    """A simple dark garment silhouette on a light background, encoded as `fmt`."""
    w, h = size
    img = Image.new("L", size, background)
    a = np.array(img)
    if kind == "trouser":
        a[int(h * .1):int(h * .9), int(w * .3):int(w * .47)] = 40
        a[int(h * .1):int(h * .9), int(w * .53):int(w * .7)] = 40
        a[int(h * .1):int(h * .25), int(w * .3):int(w * .7)] = 40
    else:
        a[int(h * .2):int(h * .85), int(w * .3):int(w * .7)] = 50
        a[int(h * .2):int(h * .4), int(w * .1):int(w * .9)] = 50
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, fmt)
    return buf.getvalue()


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write a ZIP with the given members (name -> bytes)."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def synthetic_fashion(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tiny Fashion-MNIST stand-in: one bright rectangle per image whose shape depends on the class."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for c in range(10):
        for _ in range(n_per_class):
            img = np.zeros((28, 28), np.uint8)
            h, w = 6 + 2 * c, 26 - 2 * c
            y, x = rng.integers(0, 28 - h + 1), rng.integers(0, 28 - w + 1)
            img[y:y + h, x:x + w] = rng.integers(120, 256)
            images.append(img)
            labels.append(c)
    return np.stack(images), np.array(labels, np.int64)


def phone_photo(fmt: str, *, orientation: int = 1, kind: str = "trouser", size: tuple[int, int] = (120, 160)) -> bytes:
    """A garment silhouette saved as a phone would: HEIC (pillow-heif) or AVIF (Pillow), with EXIF orientation.

    With orientation 6 the pixels are stored turned a quarter left, as a phone held upright stores them.
    """
    img = Image.open(io.BytesIO(garment_png(kind, size)))
    if orientation == 6:
        img = img.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    if fmt == "HEIC":
        import pillow_heif

        pillow_heif.from_pillow(img).save(buf, exif=exif.tobytes(), quality=90)
    else:
        img.save(buf, fmt, exif=exif.tobytes(), quality=90)
    return buf.getvalue()
