"""Annotation labels and per-bundle threshold presets.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("label", sa.String(128), nullable=True))
    op.create_table(
        "threshold_presets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("bundle_id", sa.String(128), nullable=False, index=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("provenance", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("bundle_id", "name", name="uq_preset_bundle_name"),
    )


def downgrade():
    op.drop_table("threshold_presets")
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("label")
