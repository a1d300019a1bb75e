"""API keys: random, stored only as a hash, revocable."""
from __future__ import annotations

from sqlalchemy import select

from pipeline.store import keys
from pipeline.store.schema import api_keys


def test_a_key_is_shown_once_and_stored_only_as_its_hash(engine):
    # Given a new key
    record, key = keys.create_key(engine, "alice")
    # Then the database holds its SHA-256, never the key itself
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == record.id)).mappings().one()
    assert key.startswith("fb_") and len(key) > 40
    assert key not in {str(v) for v in row.values()}
    assert row["key_hash"] == keys.hash_key(key)
    # And it authenticates, while a near miss does not
    assert keys.authenticate(engine, key).id == record.id
    assert keys.authenticate(engine, key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.authenticate(engine, None) is None


def test_revoked_keys_no_longer_authenticate(engine):
    record, key = keys.create_key(engine, "bob")
    assert keys.revoke_key(engine, record.prefix) == 1
    assert keys.authenticate(engine, key) is None
    assert keys.revoke_key(engine, record.prefix) == 0
    assert any(k.id == record.id and k.revoked_at for k in keys.list_keys(engine))


def test_keys_are_random(engine):
    assert len({keys.create_key(engine, "x")[1] for _ in range(20)}) == 20
