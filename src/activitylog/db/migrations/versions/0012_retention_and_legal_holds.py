"""retention and legal holds: each account's log retention, its legal holds, and the tombstones of purged
entries

``accounts.log_retention_days`` (at least 365, default 400) says how long the account keeps its entries;
``legal_holds`` are the windows of time that nothing may purge while a hold is active (audited rows, like
every account resource). ``activity_purged`` keeps, for each purged entry, what the proofs need: its seq,
its hash (the Merkle tree's leaf, so every checkpoint and proof still verifies) and its prev_hash (the chain
link across the gap), with the policy it was purged under (the cut-off instant and the retention in days)
and the seq of the ``activity_log.purge`` entry that records the run. It is append-only and row-secured
like the log it stands in for; the tree (``activity_tree``) is untouched by a purge.

**How a purge gets to delete entries at all.** The rule is the same on both engines: *an entry may be
deleted only once its tombstone exists* (same account, seq and hash). The append-only triggers of
``activity_entries`` and ``activity_affected`` now let a DELETE through for such a row and refuse every other
UPDATE and DELETE as before; tombstones themselves can never be changed or removed. So deleting an entry
leaves, unavoidably, a permanent record that it was purged, under which policy, by which run.

- PostgreSQL: the application role keeps SELECT and INSERT only on the log, and SELECT only on the
  tombstones (``activitylog migrate --app-role``), so it can neither delete an entry nor write the tombstone
  that would allow it. Purging goes through one function, ``activity_purge(account, from, to, older_than,
  purge_seq)``, ``SECURITY DEFINER`` and owned by the migrations' role (the tables' owner), which the app
  role may EXECUTE. The function is the narrow door and checks the policy itself, whatever its caller
  asks: the transaction must be scoped to that account (row security still applies inside it), the cut-off
  must be at least the account's retention before the database's own clock (so no caller can purge an
  entry younger than 365 days), no active legal hold may cover the entry, and ``purge_seq`` must be the seq
  the run's own entry will take (it locks the account's chain head, so the run and its entry are one
  step). A dedicated purge role would need its own credentials in the worker; a function needs none and
  cannot be used for anything else.
- SQLite has no roles: anyone with the file can drop the triggers, so the guard is against the
  application's own mistakes. The DELETE triggers take a ``WHEN NOT EXISTS (tombstone)`` condition rather
  than being dropped and re-created inside the purge's transaction: DDL in a transaction would leave the
  triggers off for anything else that transaction did, and a failure between drop and re-create would
  leave them off for good. The purge (``log.purge``) writes the tombstones and deletes in one transaction,
  under the database's write lock, with the same checks as the PostgreSQL function.

Later steps (erasure) can reuse the same pattern: a function of their own, and a trigger condition tied to
a permanent record of what was erased.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.base import UTCDateTime
from activitylog.db.protections import append_only, row_security

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MIN_RETENTION_DAYS = 365
DEFAULT_RETENTION_DAYS = 400

_TOMBSTONED = "EXISTS (SELECT 1 FROM activity_purged p WHERE p.account_id = {row}.account_id AND p.seq = {row}.seq{hash})"

PURGE_FUNCTION = """
CREATE FUNCTION activity_purge(
    p_account text, p_from bigint, p_to bigint, p_older_than timestamptz, p_purge_seq bigint
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    days integer;
    next_seq bigint;
    purged bigint;
BEGIN
    IF p_account IS DISTINCT FROM current_setting('activitylog.account_id', true) THEN
        RAISE EXCEPTION 'activity_purge: the transaction is not scoped to account %', p_account;
    END IF;
    SELECT log_retention_days INTO days FROM accounts WHERE id = p_account;
    IF days IS NULL OR days < {min_days} THEN
        RAISE EXCEPTION 'activity_purge: account % has no retention of at least {min_days} days', p_account;
    END IF;
    IF p_older_than > now() - make_interval(days => days) THEN
        RAISE EXCEPTION 'activity_purge: entries after % are within the retention of % days',
            now() - make_interval(days => days), days;
    END IF;
    SELECT seq + 1 INTO next_seq FROM activity_heads WHERE account_id = p_account FOR UPDATE;
    IF next_seq IS DISTINCT FROM p_purge_seq OR p_to >= p_purge_seq THEN
        RAISE EXCEPTION 'activity_purge: the run''s entry takes seq %, not %', next_seq, p_purge_seq;
    END IF;
    INSERT INTO activity_purged (account_id, seq, hash, prev_hash, older_than, retention_days, purge_seq)
    SELECT e.account_id, e.seq, e.hash, e.prev_hash, p_older_than, days, p_purge_seq
    FROM activity_entries e
    WHERE e.account_id = p_account AND e.seq BETWEEN p_from AND p_to AND e.occurred_at < p_older_than
      AND NOT EXISTS (
        SELECT 1 FROM legal_holds h
        WHERE h.account_id = e.account_id AND h.released_at IS NULL
          AND (h.since IS NULL OR e.occurred_at >= h.since) AND (h.until IS NULL OR e.occurred_at <= h.until)
      );
    GET DIAGNOSTICS purged = ROW_COUNT;
    DELETE FROM activity_affected a USING activity_purged p
    WHERE a.account_id = p_account AND a.seq BETWEEN p_from AND p_to
      AND p.account_id = a.account_id AND p.seq = a.seq;
    DELETE FROM activity_entries e USING activity_purged p
    WHERE e.account_id = p_account AND e.seq BETWEEN p_from AND p_to
      AND p.account_id = e.account_id AND p.seq = e.seq;
    RETURN purged;
END $$
"""


def _guard_function(table: str, allow_tombstoned_delete: bool) -> str:
    message = f"{table} is append-only"
    if not allow_tombstoned_delete:
        body = f"BEGIN RAISE EXCEPTION '{message}'; END"
    else:
        hash_check = " AND p.hash = OLD.hash" if table == "activity_entries" else ""
        allowed = _TOMBSTONED.format(row="OLD", hash=hash_check)
        body = (
            f"BEGIN IF TG_OP = 'DELETE' AND {allowed} THEN RETURN OLD; END IF; "
            f"RAISE EXCEPTION '{message}'; END"
        )
    return (
        f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$"
    )


def _sqlite_delete_trigger(table: str, allow_tombstoned_delete: bool) -> None:
    op.execute(f"DROP TRIGGER {table}_no_delete")
    when = ""
    if allow_tombstoned_delete:
        hash_check = " AND p.hash = old.hash" if table == "activity_entries" else ""
        when = f" WHEN NOT {_TOMBSTONED.format(row='old', hash=hash_check)}"
    op.execute(
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}{when} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
    )


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.execute(
        f"ALTER TABLE accounts ADD COLUMN log_retention_days INTEGER DEFAULT {DEFAULT_RETENTION_DAYS} NOT NULL "
        f"CONSTRAINT ck_accounts_log_retention_days CHECK (log_retention_days >= {MIN_RETENTION_DAYS})"
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("since", UTCDateTime(timezone=True), nullable=True),
        sa.Column("until", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("released_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_legal_holds_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index(op.f("ix_legal_holds_account_id_id"), "legal_holds", ["account_id", "id"], unique=False)
    op.create_table(
        "activity_purged",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("older_than", UTCDateTime(timezone=True), nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("purge_seq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_purged_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "seq", name=op.f("pk_activity_purged")),
    )
    append_only("activity_purged", postgres=postgres)
    if not postgres:
        for table in ("activity_entries", "activity_affected"):
            _sqlite_delete_trigger(table, allow_tombstoned_delete=True)
        return
    for table in ("legal_holds", "activity_purged"):
        row_security(table)
    for table in ("activity_entries", "activity_affected"):
        op.execute(_guard_function(table, allow_tombstoned_delete=True))
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    op.execute(PURGE_FUNCTION.format(schema=schema, min_days=MIN_RETENTION_DAYS))
    # Only the roles granted it (``activitylog migrate --app-role``) may call the purge.
    op.execute("REVOKE ALL ON FUNCTION activity_purge(text, bigint, bigint, timestamptz, bigint) FROM PUBLIC")


def downgrade() -> None:
    """Back to 0011. Refused once anything was purged: the tombstones are what the proofs of the purged
    seqs rest on, and the entries they stand for are gone."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:
        op.execute("ALTER TABLE activity_purged NO FORCE ROW LEVEL SECURITY")
    if bind.execute(sa.text("SELECT 1 FROM activity_purged LIMIT 1")).first() is not None:
        raise RuntimeError(
            "entries were purged: going below 0012 would lose their tombstones and break proofs"
        )
    if postgres:
        op.execute("DROP FUNCTION activity_purge(text, bigint, bigint, timestamptz, bigint)")
        for table in ("activity_entries", "activity_affected"):
            op.execute(_guard_function(table, allow_tombstoned_delete=False))
    else:
        for table in ("activity_entries", "activity_affected"):
            _sqlite_delete_trigger(table, allow_tombstoned_delete=False)
    op.drop_table("activity_purged")  # its triggers and policies go with it
    if postgres:
        op.execute("DROP FUNCTION activity_purged_append_only()")
    op.drop_index(op.f("ix_legal_holds_account_id_id"), table_name="legal_holds")
    op.drop_table("legal_holds")
    op.execute("ALTER TABLE accounts DROP COLUMN log_retention_days")
