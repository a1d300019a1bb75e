"""results.model_version and jobs.model_version: which weights labelled each result, and the job's pinned ones

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('results', sa.Column('model_version', sa.Text(), nullable=True))
    op.add_column('jobs', sa.Column('model_version', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('jobs', 'model_version')
    op.drop_column('results', 'model_version')
