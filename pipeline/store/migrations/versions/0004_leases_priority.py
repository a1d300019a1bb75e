"""chunk leases (lease_until, leased_by) and job priority / not_before, for dispatch from PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('chunks', sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True))
    op.add_column('chunks', sa.Column('leased_by', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('priority', sa.Text(), server_default='bulk', nullable=False))
    op.add_column('jobs', sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_chunks_pool_status', 'chunks', ['pool', 'status'])


def downgrade() -> None:
    op.drop_index('ix_chunks_pool_status', 'chunks')
    op.drop_column('jobs', 'not_before')
    op.drop_column('jobs', 'priority')
    op.drop_column('chunks', 'leased_by')
    op.drop_column('chunks', 'lease_until')
