"""The safety net for callbacks: find those PostgreSQL says are owed (chunks need none: workers lease them)."""
from __future__ import annotations

from sqlalchemy import Engine, func, select

from pipeline.store.schema import callbacks


def due_callbacks(engine: Engine, limit: int = 100) -> list[int]:
    """Ids of callbacks waiting for a delivery attempt whose time has come."""
    with engine.connect() as conn:
        return list(conn.execute(
            select(callbacks.c.id)
            .where(callbacks.c.status == "pending", callbacks.c.next_attempt_at <= func.now())
            .order_by(callbacks.c.next_attempt_at).limit(limit)
        ).scalars())
