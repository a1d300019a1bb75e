"""items: where each archive member's data lies (offset, length, method, size, CRC-32), for ranged reads

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('items', sa.Column('data_offset', sa.BigInteger(), nullable=True))
    op.add_column('items', sa.Column('data_length', sa.BigInteger(), nullable=True))
    op.add_column('items', sa.Column('method', sa.SmallInteger(), nullable=True))
    op.add_column('items', sa.Column('size', sa.BigInteger(), nullable=True))
    op.add_column('items', sa.Column('crc32', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for name in ('crc32', 'size', 'method', 'data_length', 'data_offset'):
        op.drop_column('items', name)
