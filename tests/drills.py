"""What a forger with write access to the database does, written once for every drill: edit entries behind
the app's back (inside ``conftest.behind_the_apps_back``), re-chain them so every hash links again, and
rebuild the Merkle tree so it matches the forged entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from activitylog.log import tree
from activitylog.log.chain import entry_hash, format_instant
from conftest import Tenant


def entry_row(conn: Connection, tenant: Tenant, seq: int) -> dict[str, Any]:
    return dict(
        conn.execute(
            text("SELECT * FROM activity_entries WHERE account_id = :a AND seq = :s"),
            {"a": tenant.account_id, "s": seq},
        )
        .mappings()
        .one()
    )


def set_entry(conn: Connection, tenant: Tenant, seq: int, **values: Any) -> None:
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    conn.execute(
        text(f"UPDATE activity_entries SET {assignments} WHERE account_id = :a AND seq = :s"),
        {**values, "a": tenant.account_id, "s": seq},
    )


def _aware(value: Any) -> Any:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def forge(row: dict[str, Any], prev_hash: str, **changes: Any) -> dict[str, Any]:
    """A forged entry whose prev_hash links and whose hash is computed correctly by the forger."""
    forged = {**row, **changes, "prev_hash": prev_hash}
    fields = {
        **forged,
        "occurred_at": format_instant(_aware(forged["occurred_at"])),
        "changes": json.loads(forged["changes"]),
    }
    forged["hash"] = entry_hash(prev_hash, fields)
    return forged


def rechain_from(conn: Connection, tenant: Tenant, start: int, **edit: Any) -> None:
    """Edit entry ``start`` and recompute every later hash, so the chain links again."""
    prev = entry_row(conn, tenant, start - 1)["hash"] if start > 1 else "0" * 64
    last = conn.execute(
        text("SELECT max(seq) FROM activity_entries WHERE account_id = :a"), {"a": tenant.account_id}
    ).scalar_one()
    for seq in range(start, last + 1):
        row = entry_row(conn, tenant, seq)
        forged = forge(row, prev, **(edit if seq == start else {}))
        set_entry(conn, tenant, seq, **{k: forged[k] for k in (*edit, "prev_hash", "hash")})
        prev = forged["hash"]


def rebuild_tree(conn: Connection, tenant: Tenant) -> None:
    """What a forger with the database does after rewriting entries: the tree again matches them."""
    conn.execute(text("DELETE FROM activity_tree WHERE account_id = :a"), {"a": tenant.account_id})
    rows = conn.execute(
        text("SELECT seq, hash FROM activity_entries WHERE account_id = :a ORDER BY seq"),
        {"a": tenant.account_id},
    ).all()
    frontier: list[bytes] = []
    for seq, digest in rows:
        frontier, completed = tree.append(frontier, seq - 1, digest)
        if completed:
            conn.execute(
                text("INSERT INTO activity_tree (account_id, seq, hashes) VALUES (:a, :s, :h)"),
                {"a": tenant.account_id, "s": seq, "h": completed},
            )
    conn.execute(
        text("UPDATE activity_heads SET seq = :s, hash = :h, tree = :t WHERE account_id = :a"),
        {"s": rows[-1][0], "h": rows[-1][1], "t": b"".join(frontier), "a": tenant.account_id},
    )


def truncate_to(conn: Connection, tenant: Tenant, keep: int) -> None:
    """Delete every entry after ``keep`` (``keep`` ≥ 1) and rebuild the tree over what is left."""
    for table in ("activity_entries", "activity_tree"):
        conn.execute(
            text(f"DELETE FROM {table} WHERE account_id = :a AND seq > :s"),
            {"a": tenant.account_id, "s": keep},
        )
    rebuild_tree(conn, tenant)
