"""Site thresholds are versioned and append-only: a new value for a preset's name is its next version,
with what produced it (read-out, criterion and its figure, number of cases, session, reader).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COLUMNS = (
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("readout", sa.String(32), nullable=True),
    sa.Column("criterion", sa.String(64), nullable=True),
    sa.Column("figure", sa.Float, nullable=True),
    sa.Column("n_cases", sa.Integer, nullable=True),
    sa.Column("session", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(128), nullable=True),
)


def upgrade():
    with op.batch_alter_table("threshold_presets") as batch:
        for column in COLUMNS:
            batch.add_column(column)
        batch.drop_constraint("uq_preset_bundle_name", type_="unique")
        batch.create_unique_constraint("uq_preset_bundle_name_version", ["bundle_id", "name", "version"])
    if op.get_bind().dialect.name == "postgresql":  # the function comes from 0004
        op.execute(
            "CREATE TRIGGER threshold_presets_append_only BEFORE UPDATE OR DELETE ON threshold_presets "
            "FOR EACH ROW EXECUTE FUNCTION anomascope_append_only()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER threshold_presets_no_{action.lower()} BEFORE {action} ON threshold_presets BEGIN "
            "SELECT RAISE(ABORT, 'append-only: rows of threshold_presets are never changed or deleted'); END"
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER threshold_presets_append_only ON threshold_presets")
    else:
        for action in ("update", "delete"):
            op.execute(f"DROP TRIGGER threshold_presets_no_{action}")
    with op.batch_alter_table("threshold_presets") as batch:
        batch.drop_constraint("uq_preset_bundle_name_version", type_="unique")
        batch.create_unique_constraint("uq_preset_bundle_name", ["bundle_id", "name"])
        for column in reversed(COLUMNS):
            batch.drop_column(column.name)
