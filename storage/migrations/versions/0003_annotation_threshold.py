"""The threshold belongs to the annotation version: each saved mask records the threshold it was made at
and how that threshold was chosen (a run is stored once, when the reader presses Run).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("threshold", sa.Float, nullable=True))
        batch.add_column(sa.Column("threshold_method", sa.String(64), nullable=True))


def downgrade():
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("threshold_method")
        batch.drop_column("threshold")
