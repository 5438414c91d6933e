"""erasure: canonical form v2's salts, and the one door through which an erasure scrubs an entry

``activity_entries.salts`` (NULL for every entry written before, which stay canonical form v1) holds a v2
entry's salts (``log.personal``): the entry's personal values enter its hash only as salted commitments,
so deleting a value and its salt leaves a commitment that still verifies and reveals nothing.

``activity_erased`` is the permanent record that an erasure scrubbed an entry: its seq and the seq of the
``contact.erase`` entry of the erasure. Append-only and row-secured like the log.

**How an erasure gets to change an entry at all.** The rule is the same on both engines: *an entry may be
updated only once its erasure is recorded*, only if it is a v2 entry, and only in what is not hashed in the
clear — its ``resource_id``, ``resource_name``, ``summary``, ``changes`` text, ``salts`` and
``csv_escapes``; every other column (seq, time, actor, action, resource type, hashes, …) must stay as it
was. Whether the new values keep the commitments is the verifiers' job: an entry whose commitments do not
match its hash fails ``verify`` like any other edit. An ``activity_affected`` row may now also be deleted once
its entry's erasure is recorded (the erased address's row).

- PostgreSQL: the application role still has SELECT and INSERT only on the log and SELECT on
  ``activity_erased``; it erases through ``activity_erase(account, seq, erase_seq, resource_id,
  resource_name, summary, changes, salts, csv_escapes, gone)``, ``SECURITY DEFINER``, which checks that the
  transaction is scoped to that account, that ``erase_seq`` is the seq the erasure's own entry will take
  (the account's chain head is locked), that the entry is a v2 one before it, and writes the record before
  the update. ``gone`` lists the ``activity_affected`` resource ids (of type ``address``) the update removes.
- The purge function of 0012 is replaced by one that may also run in batches after the run's entry is
  written (see ``PURGE_FUNCTION``), so a long purge no longer holds the chain head: appends interleave.
- SQLite: the text-search index's content table gets an index on (account_id, seq), so removing some
  entries' copies (a purge's piece, an erasure) no longer scans the whole index.
- SQLite has no roles: the UPDATE trigger and the DELETE trigger of ``activity_affected`` take the same
  conditions as a ``WHEN NOT``, and ``log.erasure`` runs the same statements in the caller's transaction.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.migrate import earlier_migration
from activitylog.db.protections import append_only, row_security

MIN_RETENTION_DAYS = 365
SEARCH_KEY_INDEX = "ix_activity_search_content_account_seq"  # SQLite: (account_id, seq) of the FTS copy

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Columns an erasure may not change (everything but the personal values' columns and what derives from them).
KEPT = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "ip_key", "user_agent", "action", "resource_type", "request_id", "prev_hash", "hash",
)  # fmt: skip

_TOMBSTONED = "EXISTS (SELECT 1 FROM activity_purged p WHERE p.account_id = {row}.account_id AND p.seq = {row}.seq{hash})"
_ERASED = (
    "EXISTS (SELECT 1 FROM activity_erased x WHERE x.account_id = {row}.account_id AND x.seq = {row}.seq)"
)


def _update_allowed(old: str, new: str) -> str:
    same = " AND ".join(f"{new}.{c} IS NOT DISTINCT FROM {old}.{c}" for c in KEPT)
    sqlite_same = same.replace("IS NOT DISTINCT FROM", "IS")
    kept = same if old == "OLD" else sqlite_same
    return f"{_ERASED.format(row=old)} AND {old}.salts IS NOT NULL AND {new}.salts IS NOT NULL AND {kept}"


ERASE_FUNCTION = """
CREATE FUNCTION activity_erase(
    p_account text, p_seq bigint, p_erase_seq bigint, p_resource_id text, p_resource_name text,
    p_summary text, p_changes text, p_salts text, p_csv_escapes bigint, p_gone text[]
) RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    next_seq bigint;
BEGIN
    IF p_account IS DISTINCT FROM current_setting('activitylog.account_id', true) THEN
        RAISE EXCEPTION 'activity_erase: the transaction is not scoped to account %', p_account;
    END IF;
    SELECT seq + 1 INTO next_seq FROM activity_heads WHERE account_id = p_account FOR UPDATE;
    IF next_seq IS DISTINCT FROM p_erase_seq OR p_seq >= p_erase_seq THEN
        RAISE EXCEPTION 'activity_erase: the erasure''s entry takes seq %, not %', next_seq, p_erase_seq;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM activity_entries WHERE account_id = p_account AND seq = p_seq AND salts IS NOT NULL
    ) THEN
        RAISE EXCEPTION 'activity_erase: seq % of account % holds no committed personal data', p_seq, p_account;
    END IF;
    INSERT INTO activity_erased (account_id, seq, erase_seq) VALUES (p_account, p_seq, p_erase_seq)
    ON CONFLICT DO NOTHING;
    UPDATE activity_entries SET resource_id = p_resource_id, resource_name = p_resource_name,
        summary = p_summary, changes = p_changes, salts = p_salts, csv_escapes = p_csv_escapes
    WHERE account_id = p_account AND seq = p_seq;
    DELETE FROM activity_affected
    WHERE account_id = p_account AND seq = p_seq AND resource_type = 'address' AND resource_id = ANY(p_gone);
END $$
"""
ERASE_SIGNATURE = "activity_erase(text, bigint, bigint, text, text, text, text, text, bigint, text[])"


# The purge of 0012, now also callable in batches after the run's entry is written (each batch its own short
# transaction, so appends interleave): ``p_purge_seq`` is either the seq the run's entry will take in this
# transaction (0012's way: the head is locked) or an existing ``activity_log.purge`` entry whose ranges hold
# ``p_from..p_to``. Every other check is 0012's.
PURGE_FUNCTION = """
CREATE OR REPLACE FUNCTION activity_purge(
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
    IF p_to >= p_purge_seq OR NOT EXISTS (
        SELECT 1 FROM activity_entries r
        WHERE r.account_id = p_account AND r.seq = p_purge_seq AND r.action = 'activity_log.purge'
          AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(r.changes::jsonb -> 'ranges') g
            WHERE (g ->> 0)::bigint <= p_from AND (g ->> 1)::bigint >= p_to
          )
    ) THEN
        SELECT seq + 1 INTO next_seq FROM activity_heads WHERE account_id = p_account FOR UPDATE;
        IF next_seq IS DISTINCT FROM p_purge_seq OR p_to >= p_purge_seq THEN
            RAISE EXCEPTION 'activity_purge: the run''s entry takes seq %, not %', next_seq, p_purge_seq;
        END IF;
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


def _pg_guard(table: str, erasable: bool) -> str:
    message = f"{table} is append-only"
    hash_check = " AND p.hash = OLD.hash" if table == "activity_entries" else ""
    allowed = [f"(TG_OP = 'DELETE' AND {_TOMBSTONED.format(row='OLD', hash=hash_check)})"]
    if erasable and table == "activity_entries":
        allowed.append(f"(TG_OP = 'UPDATE' AND {_update_allowed('OLD', 'NEW')})")
    if erasable and table == "activity_affected":
        allowed.append(f"(TG_OP = 'DELETE' AND {_ERASED.format(row='OLD')})")
    body = (
        f"BEGIN IF {' OR '.join(allowed)} THEN RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; "
        f"END IF; RAISE EXCEPTION '{message}'; END"
    )
    return (
        f"CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$"
    )


def _sqlite_triggers(erasable: bool) -> None:
    op.execute("DROP TRIGGER activity_entries_no_update")
    when = f" WHEN NOT ({_update_allowed('old', 'new')})" if erasable else ""
    op.execute(
        f"CREATE TRIGGER activity_entries_no_update BEFORE UPDATE ON activity_entries{when} "
        "BEGIN SELECT RAISE(ABORT, 'activity_entries is append-only'); END"
    )
    op.execute("DROP TRIGGER activity_affected_no_delete")
    allowed = _TOMBSTONED.format(row="old", hash="")
    if erasable:
        allowed += f" OR {_ERASED.format(row='old')}"
    op.execute(
        f"CREATE TRIGGER activity_affected_no_delete BEFORE DELETE ON activity_affected WHEN NOT ({allowed}) "
        "BEGIN SELECT RAISE(ABORT, 'activity_affected is append-only'); END"
    )


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.add_column("activity_entries", sa.Column("salts", sa.Text(), nullable=True))
    op.create_table(
        "activity_erased",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("erase_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_activity_erased_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("account_id", "seq", "erase_seq", name=op.f("pk_activity_erased")),
    )
    append_only("activity_erased", postgres=postgres)
    if not postgres:
        _sqlite_triggers(erasable=True)
        # The text-search index's copy of (account_id, seq) is found by this index of its content table, so
        # a purge or an erasure removes a few entries' text without scanning the whole index.
        op.execute(f"CREATE INDEX {SEARCH_KEY_INDEX} ON activity_search_content (c3, c4)")
        return
    row_security("activity_erased")
    for table in ("activity_entries", "activity_affected"):
        op.execute(_pg_guard(table, erasable=True))
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    op.execute(ERASE_FUNCTION.format(schema=schema))
    op.execute(PURGE_FUNCTION.format(schema=schema, min_days=MIN_RETENTION_DAYS))
    op.execute(f"REVOKE ALL ON FUNCTION {ERASE_SIGNATURE} FROM PUBLIC")


def downgrade() -> None:
    """Back to 0012. Refused once a v2 entry exists: its hash covers commitments that a v1 reader would
    check as plain values."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if bind.execute(sa.text("SELECT 1 FROM activity_entries WHERE salts IS NOT NULL LIMIT 1")).first():
        raise RuntimeError("entries in canonical form v2 exist: going below 0014 would break their proofs")
    if postgres:
        op.execute(f"DROP FUNCTION {ERASE_SIGNATURE}")
        schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
        previous = earlier_migration("0012_retention_and_legal_holds.py").PURGE_FUNCTION.replace(
            "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
        )
        op.execute(previous.format(schema=schema, min_days=MIN_RETENTION_DAYS))
        for table in ("activity_entries", "activity_affected"):
            op.execute(_pg_guard(table, erasable=False))
    else:
        _sqlite_triggers(erasable=False)
        op.execute(f"DROP INDEX {SEARCH_KEY_INDEX}")
    op.drop_table("activity_erased")
    if postgres:
        op.execute("DROP FUNCTION activity_erased_append_only()")
    op.execute("ALTER TABLE activity_entries DROP COLUMN salts")
