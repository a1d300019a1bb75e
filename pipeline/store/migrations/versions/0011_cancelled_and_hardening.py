"""Hardening (issue 20): cancelled items kept apart from failed ones, bounded storage outages, per-key sources

- results: the 'cancelled' error rows a cancel used to write are dropped; an item of a cancelled job without a
  result is cancelled (derived, so a cancel writes one row whatever the job's size).
- chunks.unavailable_since: when a chunk was first deferred because its storage could not be read, so an
  outage that lasts past FB_STORAGE_OUTAGE_S fails the chunk's items instead of deferring them for ever.
- api_keys.sources: the s3://BUCKET/PREFIX/ sources a key may make jobs from (none unless granted).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('chunks', sa.Column('unavailable_since', sa.DateTime(timezone=True), nullable=True))
    op.add_column('api_keys', sa.Column('sources', postgresql.ARRAY(sa.Text()), nullable=True))
    op.execute("delete from results r using jobs j where j.id = r.job_id and j.status = 'cancelled' "
               "and r.error = 'cancelled'")


def downgrade() -> None:
    op.drop_column('api_keys', 'sources')
    op.drop_column('chunks', 'unavailable_since')
