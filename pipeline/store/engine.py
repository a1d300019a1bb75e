"""Database engines, created lazily and once per process (never inherited across fork)."""
from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


def normalize_url(url: str) -> str:
    """Name the driver explicitly: always psycopg 3 (installed with the project; job creation uses its COPY), also
    for a URL written for psycopg2 (the URL is otherwise the same). Settings refuse other drivers at start."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def get_engine(url: str) -> Engine:
    """Return this process's engine for `url`; a forked child gets a fresh one, not its parent's sockets."""
    key = (os.getpid(), url)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = create_engine(
                    normalize_url(url),
                    pool_pre_ping=True,  # a restarted PostgreSQL leaves dead sockets in the pool
                    pool_size=5,
                    max_overflow=5,
                    pool_recycle=1800,
                )
                _engines[key] = engine
    return engine


def dispose_inherited() -> None:
    """Forget engines created by a parent process, without closing the parent's connections."""
    pid = os.getpid()
    with _lock:
        for key in [k for k in _engines if k[0] != pid]:
            _engines.pop(key).dispose(close=False)
