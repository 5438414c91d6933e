"""SQLite's text-search index in two tables (``log.search_index``): v1 entries' text in one, v2 entries'
(personal data) in the other; a search reads both; an erasure rewrites the personal one alone; verify
checks each copy is where its entry's form belongs; migration 0023 moves an existing log's copies."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.log import search_index
from activitylog.log.filters import parse_filter
from activitylog.log.query import entries_page
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.services import erasure, lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from test_erasure import _subscriber
from test_migrations import _downgrade


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Database]:
    database = connect(f"sqlite:///{tmp_path / 'search.db'}")
    upgrade(database)
    yield database
    database.dispose()


def _copies(db: Database, account_id: str) -> dict[str, list[int]]:
    with db.engine.connect() as conn:
        return {
            table: list(
                conn.execute(
                    text(f"SELECT seq FROM {table} WHERE account_id = :a ORDER BY seq"), {"a": account_id}
                ).scalars()
            )
            for table in search_index.TABLES
        }


def _forms(db: Database, account_id: str) -> dict[str, list[int]]:
    """The account's seqs by canonical form: what each index should hold."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, salts IS NULL FROM activity_entries WHERE account_id = :a ORDER BY seq"),
            {"a": account_id},
        ).all()
    return {
        search_index.SHARED: [seq for seq, v1 in rows if v1],
        search_index.PERSONAL: [seq for seq, v1 in rows if not v1],
    }


def _matching(db: Database, account_id: str, word: str) -> list[int]:
    """The seqs whose text holds ``word``, newest first, by a plain scan: what a search must find."""
    with db.engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT seq FROM activity_entries WHERE account_id = :a AND (instr(lower(summary), :w) "
                    "OR instr(lower(coalesce(resource_name, '')), :w)) ORDER BY seq DESC"
                ),
                {"a": account_id, "w": word},
            ).scalars()
        )


RARE = "zqxjvk"  # trigrams no other text here has (zqx, qxj, xjv, jvk)


def _trigrams_left(db: Database, table: str) -> set[bytes]:
    """The rare trigrams still in the bytes of ``table``'s segments (FTS5 stores a leaf's terms
    prefix-compressed, so some trigrams of a text appear whole and some do not)."""
    with db.engine.connect() as conn:
        blocks = b"".join(r[0] for r in conn.execute(text(f"SELECT block FROM {table}_data")))
    return {t for t in (RARE[i : i + 3].encode() for i in range(len(RARE) - 2)) if t in blocks}


def _uow(db: Database, account_id: str) -> UnitOfWork:
    return UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())


def _search(db: Database, account_id: str, q: str, limit: int) -> list[int]:
    """Every seq a search finds, page after page, newest first."""
    seqs: list[int] = []
    cursor = None
    while True:
        page, cursor = entries_page(db, account_id, parse_filter(q=q), cursor=cursor, limit=limit)
        seqs += [entry["seq"] for entry in page]
        if cursor is None:
            return seqs


def test_each_entry_is_indexed_by_its_form_and_a_search_reads_both(lite: Database) -> None:
    address = f"wombat-{secrets.token_hex(4)}@subscriber.example"
    account_id, _ = _subscriber(lite, address, updates=3)
    for i in range(3):  # v1 entries naming the same word as the contact's entries
        lists.create_list(_uow(lite, account_id), f"wombat list {i}")
    copies, forms = _copies(lite, account_id), _forms(lite, account_id)
    assert copies == forms
    assert forms[search_index.SHARED] and forms[search_index.PERSONAL]
    expected = _matching(lite, account_id, "wombat")
    found_in = {t for t, seqs in forms.items() if set(seqs) & set(expected)}
    assert found_in == set(search_index.TABLES), "the word must be in entries of both forms"
    for limit in (1, 2, 3, 50):  # pages cut anywhere across the two indexes, newest first
        assert _search(lite, account_id, "wombat", limit) == expected


def test_an_erasure_rewrites_the_personal_index_alone(lite: Database) -> None:
    address = f"{RARE}-{secrets.token_hex(4)}@subscriber.example"
    account_id, _ = _subscriber(lite, address, updates=2)
    lists.create_list(_uow(lite, account_id), "quoll list")

    def segments(table: str) -> set[Any]:
        """The index's pages, but its averages (id 1) and structure (id 10), which every insert changes."""
        with lite.engine.connect() as conn:
            return {tuple(r) for r in conn.execute(text(f"SELECT id, block FROM {table}_data WHERE id > 10"))}

    shared_before = segments(search_index.SHARED)
    assert _trigrams_left(lite, search_index.PERSONAL), "the address's text was never indexed"
    assert not _trigrams_left(lite, search_index.SHARED)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(lite.engine, "before_cursor_execute", seen)
    try:
        erasure.erase_subscriber(_uow(lite, account_id), address)
    finally:
        event.remove(lite.engine, "before_cursor_execute", seen)
    # the erasure's own entry (no personal data) joins the shared index; nothing there is rewritten
    assert shared_before and shared_before <= segments(search_index.SHARED), "the shared index was rewritten"
    assert not any(f"INTO {search_index.SHARED}(" in s for s in statements)
    assert not _trigrams_left(lite, search_index.PERSONAL), "the erased text is still in the index's bytes"
    assert _search(lite, account_id, RARE, 10) == []
    assert _search(lite, account_id, "quoll list", 10) == _matching(lite, account_id, "quoll list") != []
    with lite.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).ok
    assert _copies(lite, account_id) == _forms(lite, account_id)


def test_verify_finds_a_copy_in_the_wrong_index(lite: Database) -> None:
    account_id, _ = _subscriber(lite, f"numbat-{secrets.token_hex(4)}@subscriber.example", updates=1)
    seq = _forms(lite, account_id)[search_index.PERSONAL][0]
    with lite.engine.begin() as conn:  # the copy moved to the shared index, the text unchanged
        conn.execute(search_index.delete_seqs(search_index.PERSONAL), {"account": account_id, "seqs": [seq]})
        conn.execute(search_index.copy_entries(search_index.SHARED), {"account": account_id, "seqs": [seq]})
    with lite.for_account(account_id).reader() as session:
        verdict = verify_account(session, account_id)
    assert not verdict.ok and verdict.first_bad_seq == seq, verdict
    assert "text-search index" in (verdict.reason or "")


def test_migration_0023_moves_the_personal_copies_and_back(lite: Database) -> None:
    address = f"{RARE}.bilby-{secrets.token_hex(4)}@subscriber.example"
    account_id, _ = _subscriber(lite, address, updates=2)
    lists.create_list(_uow(lite, account_id), "bilby list")
    every = sorted(s for seqs in _forms(lite, account_id).values() for s in seqs)
    _downgrade(lite, "0022")
    with lite.engine.connect() as conn:
        shared = list(
            conn.execute(
                text("SELECT seq FROM activity_search WHERE account_id = :a ORDER BY rowid"),
                {"a": account_id},
            ).scalars()
        )
    assert shared == every  # one index again, its rowids rising with seq
    upgrade(lite)
    assert _copies(lite, account_id) == _forms(lite, account_id)
    assert _trigrams_left(lite, search_index.PERSONAL)
    assert not _trigrams_left(lite, search_index.SHARED), "the shared index still holds a moved copy's text"
    with lite.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).ok
    expected, forms = _matching(lite, account_id, "bilby"), _forms(lite, account_id)
    assert all(set(expected) & set(forms[t]) for t in search_index.TABLES)
    assert _search(lite, account_id, "bilby", 2) == expected
