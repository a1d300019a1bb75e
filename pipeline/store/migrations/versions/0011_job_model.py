"""jobs.model and benchmarks.model: which model (weights/<model>/) a job is classified with, and was timed

Rows from before there were several models were the Fashion-MNIST CNN's: they get 'fmnist'.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('jobs', 'benchmarks'):
        # The default fills the existing rows, then goes: a new row must name its model.
        op.add_column(table, sa.Column('model', sa.Text(), nullable=False, server_default='fmnist'))
        op.alter_column(table, 'model', server_default=None)


def downgrade() -> None:
    op.drop_column('benchmarks', 'model')
    op.drop_column('jobs', 'model')
