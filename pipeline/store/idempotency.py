"""Idempotent submission: the same Idempotency-Key (per API key, for 24 hours) names the same job.

The key is recorded in the job's own transaction (`jobs.create_job(idempotency=...)`), so a job and its key
exist together or not at all; a job forgotten because it could not be enqueued takes its key with it.
"""
from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sqlalchemy import Connection, Engine, delete, func, insert, select

from pipeline.store.schema import idempotency_keys

KEEP_S = 24 * 3600


@dataclass(frozen=True)
class Claim:
    """An Idempotency-Key and the hash of the upload it was sent with."""

    key: str
    request_hash: str


def request_hash(fields: dict[str, str], files: Iterable[tuple[str, Path]]) -> str:
    """A digest of what a submission asks for: its form fields and every file's name and bytes."""
    h = hashlib.sha256()
    for name in sorted(fields):
        h.update(f"field:{name}={fields[name]}\n".encode())
    for filename, path in files:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        h.update(f"file:{filename}:{digest.hexdigest()}\n".encode())
    return h.hexdigest()


def find(engine: Engine, api_key_id: uuid.UUID, key: str) -> tuple[uuid.UUID, str] | None:
    """(job id, request hash) for a key used within the last 24 hours; an older use is forgotten."""
    with engine.begin() as conn:
        conn.execute(delete(idempotency_keys).where(
            idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key,
            idempotency_keys.c.created_at < func.now() - func.make_interval(0, 0, 0, 0, 0, 0, KEEP_S)))
        row = conn.execute(select(idempotency_keys.c.job_id, idempotency_keys.c.request_hash).where(
            idempotency_keys.c.api_key_id == api_key_id, idempotency_keys.c.key == key)).first()
    return (row.job_id, row.request_hash) if row else None


def record(conn: Connection, api_key_id: uuid.UUID, claim: Claim, job_id: uuid.UUID) -> None:
    """Record the key for `job_id` (inside the job's transaction; a concurrent twin fails on the primary key)."""
    conn.execute(insert(idempotency_keys).values(api_key_id=api_key_id, key=claim.key,
                                                 request_hash=claim.request_hash, job_id=job_id))
