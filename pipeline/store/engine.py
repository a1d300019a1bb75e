"""Database engines, created lazily and once per process (never inherited across fork)."""
from __future__ import annotations

import os
import threading
from importlib.util import find_spec

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

_lock = threading.Lock()
_engines: dict[tuple[int, str], Engine] = {}


def normalize_url(url: str) -> str:
    """Name the driver explicitly: psycopg 3 (installed with the project), or psycopg2 where a URL asks for it
    and it is installed (the URL is otherwise the same, so psycopg 3 takes it when psycopg2 is absent)."""
    u = make_url(url)
    psycopg2_asked = u.drivername == "postgresql+psycopg2"
    if u.drivername in ("postgresql", "postgres") or (psycopg2_asked and find_spec("psycopg2") is None):
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
