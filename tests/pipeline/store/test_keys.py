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


def test_sources_are_granted_and_taken_away_per_key(engine):
    from pipeline.store.keys import authenticate, create_key, grant_sources

    # Given a key made with no source, and one made with a prefix
    plain, plain_key = create_key(engine, f"plain-{plain_id()}")
    scoped, scoped_key = create_key(engine, f"scoped-{plain_id()}", ["s3://photos/team-a/"])
    assert authenticate(engine, plain_key).sources == () and authenticate(engine, scoped_key).sources == \
        ("s3://photos/team-a/",)
    # When an operator grants the first two prefixes, and takes the second's away
    assert grant_sources(engine, str(plain.id), ["s3://photos/team-b/", "s3://scans/"]) == 1
    assert grant_sources(engine, scoped.prefix, []) == 1
    # Then each key reads only what it was granted
    assert authenticate(engine, plain_key).sources == ("s3://photos/team-b/", "s3://scans/")
    assert authenticate(engine, scoped_key).sources == ()


def plain_id() -> str:
    import uuid

    return uuid.uuid4().hex[:8]
