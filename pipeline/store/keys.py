"""API keys: random, shown once, stored only as a SHA-256 hash, compared in constant time."""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import Engine, func, insert, select, update

from pipeline.store.schema import api_keys

KEY_PREFIX = "fb_"


@dataclass(frozen=True)
class ApiKey:
    """A stored key, without the key itself."""

    id: uuid.UUID
    name: str
    prefix: str
    signing_secret: str
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    sources: tuple[str, ...] = ()  # s3://BUCKET/PREFIX/ this key may make jobs from (none unless granted)


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_signing_secret() -> str:
    """A callback signing secret in the Standard Webhooks form: "whsec_" and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_key(engine: Engine, name: str, sources: Sequence[str] = ()) -> tuple[ApiKey, str]:
    """Create a key named `name` (allowed to make jobs from `sources`, s3://BUCKET/PREFIX/ each); return its
    record and the key, which is never retrievable again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(id=uuid.uuid4(), name=name, prefix=key[:10], signing_secret=new_signing_secret(),
                    sources=tuple(sources))
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                id=record.id, name=name, prefix=record.prefix, key_hash=hash_key(key),
                signing_secret=record.signing_secret, sources=list(sources) or None,
            )
        )
    return record, key


def grant_sources(engine: Engine, ident: str, sources: Sequence[str]) -> int:
    """Set the sources (s3://BUCKET/PREFIX/) the live keys named `ident` (name, prefix or id) may make jobs from;
    an empty list takes every source away. Returns how many keys changed."""
    with engine.begin() as conn:
        return conn.execute(update(api_keys).where(_named(ident), api_keys.c.revoked_at.is_(None))
                            .values(sources=list(sources) or None)).rowcount


def authenticate(engine: Engine, key: str | None) -> ApiKey | None:
    """The live key matching `key`, or None. The digest comparison runs in constant time."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    with engine.begin() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).mappings().first()
        if row is None or not hmac.compare_digest(row["key_hash"], digest) or row["revoked_at"] is not None:
            return None
        conn.execute(update(api_keys).where(api_keys.c.id == row["id"]).values(last_used_at=func.now()))
    return _record(row)


def list_keys(engine: Engine) -> list[ApiKey]:
    """Every key, oldest first (revoked ones included)."""
    with engine.connect() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
    return [_record(r) for r in rows]


def revoke_key(engine: Engine, ident: str) -> int:
    """Revoke the keys whose name, prefix or id equals `ident`; return how many were revoked."""
    with engine.begin() as conn:
        res = conn.execute(update(api_keys).where(_named(ident), api_keys.c.revoked_at.is_(None))
                           .values(revoked_at=func.now()))
    return res.rowcount


def _named(ident: str):
    cond = (api_keys.c.name == ident) | (api_keys.c.prefix == ident)
    try:
        cond = cond | (api_keys.c.id == uuid.UUID(ident))
    except ValueError:
        pass
    return cond


def _record(row) -> ApiKey:
    return ApiKey(
        id=row["id"], name=row["name"], prefix=row["prefix"], signing_secret=row["signing_secret"],
        created_at=row["created_at"], revoked_at=row["revoked_at"], sources=tuple(row["sources"] or ()),
    )
