"""Threshold-tuning sessions: a reader's worklist with one read-out, and per saved case the mask version
and the threshold the reader settled on. Both tables are append-only, like annotations.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = ("tuning_sessions", "tuning_entries")


def upgrade():
    op.create_table(
        "tuning_sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("bundle_id", sa.String(128), nullable=False),
        sa.Column("readout", sa.String(32), nullable=False),
        sa.Column("reader", sa.String(128), nullable=False),
        sa.Column("worklist", sa.JSON, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "tuning_entries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("session_id", sa.Integer, sa.ForeignKey("tuning_sessions.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("annotation_id", sa.Integer, sa.ForeignKey("annotations.id", ondelete="RESTRICT"), nullable=False),
        sa.Column("threshold", sa.Float, nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_tuning_entries_session_id", "tuning_entries", ["session_id"])
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table in TABLES:
        if postgresql:  # the function comes from 0004
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION anomascope_append_only()"
            )
            continue
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'append-only: rows of {table} are never changed or deleted'); END"
            )


def downgrade():
    op.drop_table("tuning_entries")
    op.drop_table("tuning_sessions")
