"""erasure in batches: one call of ``activity_erase()`` scrubs many entries

0014's ``activity_erase()`` took one entry a call, and each call checked the transaction's account, locked
the chain head and checked the entry again: an erasure touching 1,000 entries made 1,000 calls (19.5 s on
PostgreSQL, bench/RESULTS-retention.md). It is replaced by one taking a batch of entries, one array per
column, in the same order (``p_seqs[i]`` is scrubbed to ``p_resource_ids[i]``, ``p_resource_names[i]``, …):

    activity_erase(account, erase_seq, seqs, resource_ids, resource_names, summaries, changes, salts,
                   csv_escapes, gone)

It makes 0014's checks once per batch: the transaction is scoped to that account; ``erase_seq`` is the seq
the erasure's own entry will take (the account's chain head is locked) and every seq is before it; every seq
holds committed personal data (a v2 entry of the account); and besides, the arrays are as long as ``seqs``,
whose seqs are distinct and not NULL. Then it records every entry's erasure, scrubs them in one UPDATE and
deletes their ``activity_affected`` rows of type ``address`` whose ids ``gone`` lists, and returns how many
entries it scrubbed. ``SECURITY DEFINER`` as before; the one-entry function is dropped, and the roles that
could execute it may execute this one (``migrate --app-role`` grants it too). The row triggers of 0014 still
check each row the UPDATE and the DELETE touch. SQLite has no functions: ``log.erasure`` runs the same
statements, a batch at a time, and 0014's triggers are unchanged.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from activitylog.db.migrate import earlier_migration

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ERASE_FUNCTION = """
CREATE FUNCTION activity_erase(
    p_account text, p_erase_seq bigint, p_seqs bigint[], p_resource_ids text[], p_resource_names text[],
    p_summaries text[], p_changes text[], p_salts text[], p_csv_escapes bigint[], p_gone text[]
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = {schema}, pg_temp AS $$
DECLARE
    n bigint := coalesce(cardinality(p_seqs), 0);
    next_seq bigint;
    missing bigint;
    scrubbed bigint;
BEGIN
    IF p_account IS DISTINCT FROM current_setting('activitylog.account_id', true) THEN
        RAISE EXCEPTION 'activity_erase: the transaction is not scoped to account %', p_account;
    END IF;
    IF coalesce(cardinality(p_resource_ids), 0) <> n OR coalesce(cardinality(p_resource_names), 0) <> n
        OR coalesce(cardinality(p_summaries), 0) <> n OR coalesce(cardinality(p_changes), 0) <> n
        OR coalesce(cardinality(p_salts), 0) <> n OR coalesce(cardinality(p_csv_escapes), 0) <> n THEN
        RAISE EXCEPTION 'activity_erase: every array must hold one value per seq (% seqs)', n;
    END IF;
    IF (SELECT count(DISTINCT s) FROM unnest(p_seqs) s) <> n THEN
        RAISE EXCEPTION 'activity_erase: the seqs must be distinct and not null';
    END IF;
    SELECT seq + 1 INTO next_seq FROM activity_heads WHERE account_id = p_account FOR UPDATE;
    IF next_seq IS DISTINCT FROM p_erase_seq THEN
        RAISE EXCEPTION 'activity_erase: the erasure''s entry takes seq %, not %', next_seq, p_erase_seq;
    END IF;
    IF (SELECT max(s) FROM unnest(p_seqs) s) >= p_erase_seq THEN
        RAISE EXCEPTION 'activity_erase: seq % is not before the erasure''s entry (seq %)',
            (SELECT max(s) FROM unnest(p_seqs) s), p_erase_seq;
    END IF;
    SELECT min(s) INTO missing FROM unnest(p_seqs) s WHERE NOT EXISTS (
        SELECT 1 FROM activity_entries e WHERE e.account_id = p_account AND e.seq = s AND e.salts IS NOT NULL
    );
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'activity_erase: seq % of account % holds no committed personal data', missing, p_account;
    END IF;
    INSERT INTO activity_erased (account_id, seq, erase_seq)
    SELECT p_account, s, p_erase_seq FROM unnest(p_seqs) s
    ON CONFLICT DO NOTHING;
    UPDATE activity_entries e SET resource_id = u.resource_id, resource_name = u.resource_name,
        summary = u.summary, changes = u.changes, salts = u.salts, csv_escapes = u.csv_escapes
    FROM unnest(p_seqs, p_resource_ids, p_resource_names, p_summaries, p_changes, p_salts, p_csv_escapes)
        AS u(seq, resource_id, resource_name, summary, changes, salts, csv_escapes)
    WHERE e.account_id = p_account AND e.seq = u.seq;
    GET DIAGNOSTICS scrubbed = ROW_COUNT;
    DELETE FROM activity_affected a
    WHERE a.account_id = p_account AND a.seq = ANY(p_seqs) AND a.resource_type = 'address'
      AND a.resource_id = ANY(p_gone);
    RETURN scrubbed;
END $$
"""
ERASE_SIGNATURE = (
    "activity_erase(text, bigint, bigint[], text[], text[], text[], text[], text[], bigint[], text[])"
)


def _executors(signature: str) -> list[str]:
    """The roles (other than the owner and PUBLIC) that may execute the function: they keep erasing."""
    found = op.get_bind().execute(
        sa.text(
            "SELECT DISTINCT a.grantee::regrole::text FROM pg_proc p, aclexplode(p.proacl) a "
            "WHERE p.oid = CAST(:signature AS regprocedure) AND a.privilege_type = 'EXECUTE' "
            "AND a.grantee <> p.proowner AND a.grantee <> 0"
        ),
        {"signature": signature},
    )
    return sorted(found.scalars())


def _replace(old_signature: str, new_function: str, new_signature: str) -> None:
    bind = op.get_bind()
    executors = _executors(old_signature)
    op.execute(f"DROP FUNCTION {old_signature}")
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one()
    op.execute(new_function.format(schema=schema))
    op.execute(f"REVOKE ALL ON FUNCTION {new_signature} FROM PUBLIC")
    for role in executors:
        op.execute(f"GRANT EXECUTE ON FUNCTION {new_signature} TO {role}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: the statements are log.erasure's, under 0014's triggers
    previous = earlier_migration("0014_erasure.py")
    _replace(previous.ERASE_SIGNATURE, ERASE_FUNCTION, ERASE_SIGNATURE)


def downgrade() -> None:
    """Back to 0019: 0014's one-entry function, executable by the same roles."""
    if op.get_bind().dialect.name != "postgresql":
        return
    previous = earlier_migration("0014_erasure.py")
    _replace(ERASE_SIGNATURE, previous.ERASE_FUNCTION, previous.ERASE_SIGNATURE)
