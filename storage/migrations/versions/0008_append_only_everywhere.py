"""Every table is append-only in the database itself, against every kind of statement, and reader accounts
can be locked after repeated failed sign-ins.

0004, 0006 and 0007 refused UPDATE and DELETE on some tables. Three ways round them remained:
- SQLite's REPLACE (INSERT OR REPLACE, REPLACE INTO) deletes a conflicting row without firing DELETE
  triggers (unless a connection turns recursive_triggers on, which no client is obliged to do). A BEFORE
  INSERT trigger now refuses any row that would collide with a stored one on a unique key, so REPLACE
  and upserts have nothing to replace;
- PostgreSQL's TRUNCATE fires no row trigger: every table now has a statement trigger that refuses it;
- cases, inference runs and accounts had no guard at all. Cases and runs are never changed by
  Anomascope; accounts change only their sign-in state (active, password, lockout), never their name,
  id or creation time, and are never deleted (the audit trail names them).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Each append-only table and its unique keys (the primary key first): the rows a REPLACE could replace.
APPEND_ONLY = {
    "cases": (("id",), ("content_hash",)),
    "inference_runs": (("id",),),
    "annotations": (("id",), ("lineage", "version")),
    "audit_events": (("id",),),
    "threshold_presets": (("id",), ("bundle_id", "name", "version")),
    "tuning_sessions": (("id",), ("uid",)),
    "tuning_entries": (("id",),),
}
USERS_KEYS = (("id",), ("name",))
NEWLY_GUARDED = ("cases", "inference_runs")  # the others have had UPDATE/DELETE triggers since 0004-0007
UNTRUNCATABLE_SINCE_0004 = ("annotations", "audit_events")
NEWLY_UNTRUNCATABLE = (*(t for t in APPEND_ONLY if t not in UNTRUNCATABLE_SINCE_0004), "users")
LOCKOUT_COLUMNS = (
    sa.Column("failed_sign_ins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false()),
)


def upgrade():
    for column in LOCKOUT_COLUMNS:
        op.add_column("users", column)
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_upgrade()
    else:
        _sqlite_upgrade()


def _sqlite_upgrade():
    for table in NEWLY_GUARDED:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'append-only: rows of {table} are never changed or deleted'); END"
            )
    for table, keys in {**APPEND_ONLY, "users": USERS_KEYS}.items():
        collides = " OR ".join(
            f"EXISTS (SELECT 1 FROM {table} WHERE {' AND '.join(f'{c} = NEW.{c}' for c in key)})" for key in keys
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} WHEN {collides} BEGIN "
            f"SELECT RAISE(ABORT, 'append-only: a row of {table} is never replaced; add a new one'); END"
        )
    op.execute(
        "CREATE TRIGGER users_no_delete BEFORE DELETE ON users BEGIN "
        "SELECT RAISE(ABORT, 'append-only: reader accounts are disabled, never deleted'); END"
    )
    op.execute(
        "CREATE TRIGGER users_keep_identity BEFORE UPDATE OF id, name, created ON users "
        "WHEN NEW.id IS NOT OLD.id OR NEW.name IS NOT OLD.name OR NEW.created IS NOT OLD.created BEGIN "
        "SELECT RAISE(ABORT, 'append-only: a reader account keeps its id, name and creation time'); END"
    )


def _postgresql_upgrade():
    # anomascope_append_only() comes from 0004.
    for table in NEWLY_GUARDED:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION anomascope_append_only()"
        )
    for table in NEWLY_UNTRUNCATABLE:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION anomascope_append_only()"
        )
    op.execute("""
        CREATE FUNCTION anomascope_account_identity() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                RAISE EXCEPTION 'append-only: reader accounts are disabled, never deleted'
                    USING ERRCODE = 'restrict_violation';
            END IF;
            IF NEW.id IS DISTINCT FROM OLD.id OR NEW.name IS DISTINCT FROM OLD.name
                    OR NEW.created IS DISTINCT FROM OLD.created THEN
                RAISE EXCEPTION 'append-only: a reader account keeps its id, name and creation time'
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END $$""")
    op.execute(
        "CREATE TRIGGER users_keep_identity BEFORE UPDATE OR DELETE ON users "
        "FOR EACH ROW EXECUTE FUNCTION anomascope_account_identity()"
    )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER users_keep_identity ON users")
        op.execute("DROP FUNCTION anomascope_account_identity()")
        for table in NEWLY_UNTRUNCATABLE:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        for table in NEWLY_GUARDED:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
    else:
        op.execute("DROP TRIGGER users_keep_identity")
        op.execute("DROP TRIGGER users_no_delete")
        for table in (*APPEND_ONLY, "users"):
            op.execute(f"DROP TRIGGER {table}_no_replace")
        for table in NEWLY_GUARDED:
            for action in ("update", "delete"):
                op.execute(f"DROP TRIGGER {table}_no_{action}")
    with op.batch_alter_table("users") as batch:
        for column in reversed(LOCKOUT_COLUMNS):
            batch.drop_column(column.name)
