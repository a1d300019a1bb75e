"""items.true_label: the label an upload carried (class folders or labels.csv), for accuracy reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('items', sa.Column('true_label', sa.SmallInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column('items', 'true_label')
