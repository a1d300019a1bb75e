"""A time limit on one image's decode and preprocessing, so a stalled decoder fails that image alone.

SIGALRM interrupts Python code and most blocking calls in the pool process's main thread (where Celery's
prefork pool runs tasks). A decoder stuck inside C code that never returns to Python is still caught by the
task's hard time limit and the chunk lease.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from pipeline.images.imaging import ImageError


class ItemTimeout(ImageError):
    """Decoding and preprocessing one image took longer than allowed."""


@contextmanager
def item_deadline(seconds: float) -> Iterator[None]:
    """Raise ItemTimeout in the block if it runs longer than `seconds` (no limit off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise ItemTimeout(f"decoding and preprocessing took longer than {seconds:g} s; skipped")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
