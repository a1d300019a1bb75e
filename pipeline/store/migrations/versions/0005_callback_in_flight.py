"""callbacks.in_flight_until: at most one delivery attempt of a callback under way at a time

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('callbacks', sa.Column('in_flight_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column('callbacks', 'in_flight_until')
