"""The PostgreSQL tables, as SQLAlchemy Core metadata (Alembic migrations create them)."""
from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, UUID

metadata = MetaData()


def _now() -> Column:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


api_keys = Table(
    "api_keys",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", Text, nullable=False),
    Column("prefix", Text, nullable=False),  # first characters of the key, to recognise it in listings
    Column("key_hash", Text, nullable=False, unique=True),  # sha256 of the key; the key itself is never stored
    Column("signing_secret", Text, nullable=False),  # HMAC secret for this key's completion callbacks
    _now(),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
    Column("sources", ARRAY(Text)),  # s3://BUCKET/PREFIX/ a key may make jobs from; none unless granted
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("api_key_id", UUID(as_uuid=True), ForeignKey("api_keys.id"), nullable=True),
    Column("status", Text, nullable=False),  # queued, running, succeeded, partial, failed, cancelled
    Column("backend", Text, nullable=False),
    Column("pool", Text, nullable=False),
    Column("total", Integer, nullable=False),
    Column("callback_url", Text),
    Column("priority", Text, nullable=False, server_default="bulk"),  # interactive jobs are served first
    Column("not_before", DateTime(timezone=True)),  # no chunk is handed out before this time (overnight runs)
    Column("model_version", Text),  # pinned: the weights (manifest sha256) that labelled its first chunk
    Column("error", Text),
    _now(),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Index("ix_jobs_key_created", "api_key_id", "created_at"),
    Index("ix_jobs_status", "status"),
)

# One row per image. `source` is the spooled upload's file name inside the job's storage folder (a name we
# chose), or an object's URL (s3://bucket/key) for a job made from objects already in a store; `member` is the
# position of the image in that archive's directory, and data_offset .. crc32 where its data lies, as the scan
# found it (workers on an object store read it with one ranged GET). Member names are display only.
items = Table(
    "items",
    metadata,
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("member", Integer),
    Column("true_label", SmallInteger),  # the label the upload gave it (class folders, labels.csv), if any
    Column("data_offset", BigInteger),
    Column("data_length", BigInteger),
    Column("method", SmallInteger),  # ZIP compression method: 0 stored, 8 deflate, ...
    Column("size", BigInteger),  # as the directory declares it; checked after reading, with the CRC
    Column("crc32", BigInteger),
)

chunks = Table(
    "chunks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("pool", Text, nullable=False),
    Column("start_seq", Integer, nullable=False),
    Column("end_seq", Integer, nullable=False),  # exclusive
    Column("status", Text, nullable=False),  # queued, running, done, split, cancelled
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("enqueued_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # A running chunk belongs to `leased_by` ("host:pid") until `lease_until`; the holder renews it while it
    # works, and once it lapses (or the holder process is gone) another worker takes the chunk over.
    Column("lease_until", DateTime(timezone=True)),
    Column("leased_by", Text),
    # Set when the chunk is first given back because its storage could not be read: an outage longer than
    # FB_STORAGE_OUTAGE_S fails the chunk's items, saying why, rather than deferring them for ever.
    Column("unavailable_since", DateTime(timezone=True)),
    Index("ix_chunks_job", "job_id"),
    Index("ix_chunks_pool_status", "pool", "status"),
    Index("ix_chunks_status_updated", "status", "updated_at"),
)

# Exactly one row per item, ever: the primary key makes every write idempotent (INSERT ... ON CONFLICT).
results = Table(
    "results",
    metadata,
    Column("job_id", UUID(as_uuid=True), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("label", SmallInteger),
    Column("confidence", REAL),
    Column("probabilities", ARRAY(REAL)),
    Column("error", Text),
    Column("model_version", Text),  # sha256 of the manifest of the weights that gave this result
    _now(),
    ForeignKeyConstraint(["job_id", "seq"], ["items.job_id", "items.seq"], ondelete="CASCADE"),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True),
    Column("url", Text, nullable=False),
    Column("status", Text, nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("payload", JSONB, nullable=False),
    _now(),
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("in_flight_until", DateTime(timezone=True)),  # an attempt is under way until then: no second one
    Column("delivered_at", DateTime(timezone=True)),
)

callback_attempts = Table(
    "callback_attempts",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("callback_id", BigInteger, ForeignKey("callbacks.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer),
    Column("error", Text),
    Column("duration_ms", Float),
    _now(),
)

# `Idempotency-Key` on POST /v1/jobs: per API key, the job a key made and a hash of the upload it came with.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("api_key_id", UUID(as_uuid=True), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", Text, nullable=False),
    Column("job_id", UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    _now(),
)

benchmarks = Table(
    "benchmarks",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("run_id", UUID(as_uuid=True), nullable=False),
    Column("pool", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("device", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("batch_size", Integer, nullable=False),
    Column("repetitions", Integer, nullable=False),
    Column("median_ms", Float),
    Column("p99_ms", Float),
    Column("images_per_s", Float),
    Column("speedup_vs_eager", Float),
    Column("sample_accuracy", Float),
    Column("error", Text),
    _now(),
    Index("ix_benchmarks_created", "created_at"),
)
