"""Initial schema: cases, inference runs, annotations, audit events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("content_hash", sa.String(64), nullable=False, unique=True, index=True),
        sa.Column("source_name", sa.String(512), nullable=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("shape", sa.JSON, nullable=False),
        sa.Column("spacing", sa.JSON, nullable=True),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "inference_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("bundle_id", sa.String(128), nullable=False),
        sa.Column("weights_hash", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("threshold_method", sa.String(64), nullable=True),
        sa.Column("image_score", sa.Float, nullable=True),
        sa.Column("seconds", sa.Float, nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("lineage", sa.String(32), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False, index=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("inference_runs.id", ondelete="RESTRICT"), nullable=True),
        sa.Column("slice_index", sa.Integer, nullable=True),
        sa.Column("mask_shape", sa.JSON, nullable=False),
        sa.Column("mask_data", sa.LargeBinary, nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint("lineage", "version", name="uq_annotation_lineage_version"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade():
    for table in ("audit_events", "annotations", "inference_runs", "cases"):
        op.drop_table(table)
