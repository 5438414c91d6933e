"""Erasure of a subscriber, on both engines: a contact's life (create, update, suppress, import, export) is
written in canonical form v2; the erasure removes the address and names from the tables, every entry, the
database file, exports, proofs and the API, while every verifier (``verify``, the API's, the stdlib tool with
proofs and manifest, Go's tlog) still accepts the log and the erased entries still say who did what when to
which (pseudonymous) resource. Holds refuse it (409), an unknown address is a 404, and another account is
never touched; the stdlib tool catches a tampered v2 entry."""

from __future__ import annotations

import base64
import csv
import io
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError

from activitylog.db.base import Database, connect
from activitylog.log import erasure as log_erasure
from activitylog.log.record import RequestContext, ResourceRef, batched
from activitylog.log.verify import verify_account
from activitylog.log.verify_export import (
    CSV_HEADER,
    commitment,
    consistency_holds,
    open_checkpoint,
    parse_verifier_key,
)
from activitylog.services import accounts, erasure, lists, suppressions
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Server, Tenant, app_role_on, make_tenant, run_auditor_tool, run_cli, serving
from test_go_checker import Checker, checkpointcheck  # noqa: F401  (the Go checker's fixture)
from test_secrets import database_dump

COLUMN = {name: i for i, name in enumerate(CSV_HEADER)}


def _b(hashes: list[str]) -> list[bytes]:
    return [base64.b64decode(h) for h in hashes]


def _vkey(tenant: Tenant) -> str:
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        return str(anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key").json()["verifier_key"])


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def contact_life(client: httpx.Client, address: str, first: str, last: str) -> dict[str, str]:
    """Create, update, suppress and bulk-import around one address; returns the ids."""
    lst = _ok(client.post("/api/v1/lists", json={"name": f"List {secrets.token_hex(3)}"}), 201)
    contact = _ok(
        client.post(
            f"/api/v1/lists/{lst['id']}/contacts",
            json={"email": address, "first_name": first, "last_name": last},
        ),
        201,
    )
    _ok(
        client.patch(
            f"/api/v1/contacts/{contact['id']}", json={"first_name": first + "x", "status": "unsubscribed"}
        )
    )
    _ok(client.post("/api/v1/suppressions", json={"email": address, "reason": "asked"}), 201)
    other = _ok(client.post("/api/v1/lists", json={"name": f"Other {secrets.token_hex(3)}"}), 201)
    body = [{"email": address, "first_name": first}, {"email": f"keep-{secrets.token_hex(4)}@example.org"}]
    _ok(client.post(f"/api/v1/lists/{other['id']}/contacts/import", json=body))
    return {"list": lst["id"], "contact": contact["id"], "other_list": other["id"]}


def entries(client: httpx.Client) -> list[dict[str, Any]]:
    return list(_ok(client.get("/api/v1/activity", params={"limit": 1000}))["data"])


def test_an_erasure_leaves_no_trace_and_every_proof_holds(
    server: Server,
    tmp_path: Path,
    checkpointcheck: Path,  # noqa: F811
) -> None:
    a, b = make_tenant(server, "Erasing"), make_tenant(server, "Bystander")
    address = f"zelda-{secrets.token_hex(6)}@subscriber.example"
    first, last = f"Zeldina{secrets.token_hex(4)}", f"Quuxley{secrets.token_hex(4)}"
    shared = f"both-{secrets.token_hex(6)}@subscriber.example"  # in both accounts: only A's goes
    key = parse_verifier_key(_vkey(a))
    with a.key_client() as client, b.key_client() as other:
        ids = contact_life(client, address, first, last)
        contact_life(client, shared, "Shared", "Person")
        contact_life(other, shared, "Shared", "Person")
        # v2 before the erasure: the values are there, each with its salt
        written = entries(client)
        v2 = [e for e in written if e.get("chain_version") == 2]
        assert {e["action"] for e in v2} >= {"contact.create", "contact.update", "address.suppress"}
        assert all(e["erased"] is False and e["salts"] for e in v2)
        assert all(
            "chain_version" not in e for e in written if e["action"].startswith(("list.create", "api_key"))
        )
        suppress = next(e for e in v2 if e["action"] == "address.suppress" and e["resource"]["id"] == address)
        salt = suppress["salts"]["/resource_id"]
        assert len(salt) == 32 and commitment(salt, address) != suppress["hash"]
        single = _ok(client.get(f"/api/v1/activity/{suppress['seq']}"))
        assert single["salts"] == suppress["salts"] and single["chain_version"] == 2
        before = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)

        erased = _ok(client.post("/api/v1/erasures", json={"email": address.upper()}), 201)
        assert erased["contacts_deleted"] == 2 and erased["suppression_deleted"] is True
        assert erased["entries_erased"] == 3 and erased["id"].startswith("era_")
        _ok(client.post("/api/v1/erasures", json={"email": shared}), 201)

        # (b) the erased entries still say who did what, when, to which resource
        after = entries(client)
        by_seq = {e["seq"]: e for e in after}
        for old in v2:
            now = by_seq[old["seq"]]
            assert {k: now[k] for k in ("actor", "action", "occurred_at", "hash", "prev_hash")} == {
                k: old[k] for k in ("actor", "action", "occurred_at", "hash", "prev_hash")
            }
            assert now["resource"]["type"] == old["resource"]["type"]
        own = [by_seq[e["seq"]] for e in v2 if e["resource"]["id"] in (ids["contact"], address)]
        assert own and all(e["erased"] is True for e in own)
        assert {e["resource"]["id"] for e in own} == {ids["contact"], erased["id"]}  # stable pseudonyms
        assert all(isinstance(s, dict) and set(s) == {"commitment"} for e in own for s in e["salts"].values())
        request = next(
            e for e in after if e["action"] == "contact.erase" and e["resource"]["id"] == erased["id"]
        )
        assert request["seq"] == erased["entry_seq"] and "chain_version" not in request
        assert (
            address not in json.dumps(after)
            and first not in json.dumps(after)
            and last not in json.dumps(after)
        )
        # (a) every verifier still accepts the log, and the new tree extends every old one
        checked = _ok(client.get("/api/v1/activity/verify"))
        assert checked["ok"] is True, checked
        new = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)
        again = open_checkpoint(
            client.get(f"/api/v1/activity/tree/checkpoint?tree_size={before.size}").text, key
        )
        proof = _ok(
            client.get(
                "/api/v1/activity/tree/consistency", params={"old_size": before.size, "tree_size": new.size}
            )
        )
        assert again.root == before.root
        assert consistency_holds(before.size, new.size, before.root, new.root, _b(proof["hashes"]))
        export = client.get("/api/v1/activity/export")
        jsonl = client.get("/api/v1/activity/export", params={"format": "jsonl"})
        as_of = int(export.headers["x-activity-as-of-seq"])
        proofs = client.get("/api/v1/activity/export/proof", params={"tree_size": as_of})
        manifest = client.get("/api/v1/activity/export/manifest", params={"as_of_seq": as_of})
        checkpoints = [
            before_text := client.get(f"/api/v1/activity/tree/checkpoint?tree_size={before.size}").text
        ]
        checkpoints.append(client.get(f"/api/v1/activity/tree/checkpoint?tree_size={new.size}").text)
        # tenant isolation: B's contact with the shared address, and its entries, are untouched
        theirs = entries(other)
        assert shared in json.dumps(theirs) and not any(e.get("erased") for e in theirs)
        assert _ok(other.get("/api/v1/activity/verify"))["ok"] is True
    assert before_text
    for body in (export.text, jsonl.text, proofs.text, manifest.text):
        assert address not in body and first not in body and last not in body
    header = next(csv.reader(io.StringIO(export.text)))
    assert tuple(header) == CSV_HEADER and header[-1] == "salts" and header[-2] == "hash"
    files = {"e.csv": export.text, "e.jsonl": jsonl.text, "e.proof": proofs.text, "e.manifest": manifest.text}
    for name, body in {**files, "vkey": _vkey(a)}.items():
        (tmp_path / name).write_text(body)
    for name in ("e.csv", "e.jsonl"):
        plain = run_auditor_tool(str(tmp_path / name))
        assert plain.returncode == 0, plain.stdout
    full = run_auditor_tool(
        str(tmp_path / "e.csv"),
        *("--proof", str(tmp_path / "e.proof"), "--manifest", str(tmp_path / "e.manifest")),
        *("--verifier-key", str(tmp_path / "vkey")),
        stdlib_only=False,
    )
    assert full.returncode == 0 and "MANIFEST OK" in full.stdout and "PROOF OK" in full.stdout, full.stdout
    code, said = Checker(checkpointcheck, tmp_path)(
        _vkey(a), {"checkpoints": checkpoints, "consistency": [proof], "inclusion": []}
    )
    assert code == 0, said
    with server.db.for_account(a.account_id).reader() as session:
        assert verify_account(session, a.account_id).ok
    cli = run_cli("verify", "--account", a.account_id, db_url=server.db.url)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    # (c) no byte of it left in the database
    dump = database_dump(server.db)
    assert address not in dump and first not in dump and last not in dump
    if server.db.dialect == "sqlite":
        path = server.db.engine.url.database or ""
        raw = _bytes_of(path)
        assert address.encode() not in raw and first.encode() not in raw, "the file still holds the bytes"
        assert address.encode() not in _bytes_of(f"{path}-wal")


def _bytes_of(path: str) -> bytes:
    """A live SQLite file's bytes (b"" if there is none), read by a process of its own: closing a file this
    process opened would drop every POSIX lock the process holds on it, the server's SQLite locks included,
    and the next process to close the database would then delete its -wal and -shm under the server."""
    reader = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1]); "
        "sys.stdout.buffer.write(p.read_bytes() if p.exists() else b'')"
    )
    return subprocess.run([sys.executable, "-c", reader, path], capture_output=True, check=True).stdout


@pytest.fixture(scope="module")
def open_server(db: Database) -> Iterator[Server]:
    """A server that lets streams deliver to loopback (the stream below never sends)."""
    with serving(db, stream_allow_private=True) as running:
        yield running


def test_an_erasure_takes_the_address_out_of_what_people_typed(open_server: Server) -> None:
    """A segment's condition, a saved view's and a stream's filter that name the address (in any case) are
    personal values too: v2 in their entries, and the erasure replaces them in the rows (by the pseudonym:
    the segment then matches no one, the view and the stream find nothing) and in the log."""
    tenant = make_tenant(open_server, "Typed")
    address = f"typed-{secrets.token_hex(6)}@subscriber.example"
    owner = tenant.session_client()
    with tenant.key_client() as client:
        lst = _ok(client.post("/api/v1/lists", json={"name": "Typed"}), 201)["id"]
        _ok(client.post(f"/api/v1/lists/{lst}/contacts", json={"email": address}), 201)
        conditions = [
            {"field": "email", "op": "equals", "value": f" {address.upper()} "},
            {"field": "status", "op": "equals", "value": "subscribed"},
        ]
        segment = _ok(
            client.post("/api/v1/segments", json={"name": "Them", "list_id": lst, "conditions": conditions}),
            201,
        )
        stream = _ok(
            client.post(
                "/api/v1/streams",
                json={
                    "name": "Theirs",
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/",
                    "filter": {"resource_id": address},
                },
            ),
            201,
        )
        view = _ok(owner.post("/api/v1/saved-views", json={"name": "Them", "filter": {"q": address}}), 201)
        typed = [
            e
            for e in entries(client)
            if e["action"] in ("segment.create", "stream.create", "saved_view.create")
        ]
        assert len(typed) == 3 and all(e.get("chain_version") == 2 for e in typed)

        erased = _ok(client.post("/api/v1/erasures", json={"email": address}), 201)
        pseudonym = erased["id"]
        kept = _ok(client.get(f"/api/v1/segments/{segment['id']}"))["conditions"]
        assert kept == [{**conditions[0], "value": pseudonym}, conditions[1]]
        assert _ok(client.get(f"/api/v1/streams/{stream['id']}"))["filter"] == {"resource_id": pseudonym}
        assert _ok(owner.get(f"/api/v1/saved-views/{view['id']}"))["filter"] == {"q": pseudonym}
        after = entries(client)
        assert address not in json.dumps(after).lower()
        request = next(e for e in after if e["action"] == "contact.erase")
        for rtype, rid in (("segment", segment["id"]), ("stream", stream["id"]), ("saved_view", view["id"])):
            assert request["changes"][f"{rtype}_ids"] == {"from": [rid], "to": [rid]}
        assert all(by["erased"] is True for by in after if by["seq"] in {e["seq"] for e in typed})
        assert _ok(client.get("/api/v1/activity/verify"))["ok"] is True
    dump = database_dump(open_server.db)
    assert address not in dump.lower()


def test_the_stdlib_verifier_catches_a_tampered_v2_entry(tenant: Tenant, tmp_path: Path) -> None:
    address = f"tamper-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as client:
        contact_life(client, address, "Tam", "Per")
        export = client.get("/api/v1/activity/export").text
        erased_address = f"gone-{secrets.token_hex(6)}@subscriber.example"
        contact_life(client, erased_address, "Gone", "Away")
        _ok(client.post("/api/v1/erasures", json={"email": erased_address}), 201)
        erased_export = client.get("/api/v1/activity/export").text
    rows = list(csv.reader(io.StringIO(export)))
    (tmp_path / "ok.csv").write_text(export)
    assert run_auditor_tool(str(tmp_path / "ok.csv")).returncode == 0

    def tampered(body: list[list[str]], name: str) -> str:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(body)
        (tmp_path / name).write_text(out.getvalue())
        result = run_auditor_tool(str(tmp_path / name))
        assert result.returncode == 1 and "TAMPERED" in result.stdout, result.stdout
        return result.stdout

    at = next(i for i, r in enumerate(rows) if r[COLUMN["salts"]] and r[COLUMN["action"]] == "contact.create")
    # a changed value with a fresh salt and its commitment: the hash covers the old commitment
    forged = [list(r) for r in rows]
    salts = json.loads(forged[at][COLUMN["salts"]])
    salts["/resource_name"] = secrets.token_hex(16)
    forged[at][COLUMN["salts"]] = json.dumps(salts, sort_keys=True, separators=(",", ":"))
    forged[at][COLUMN["resource_name"]] = "someone-else@example.org"
    forged[at][COLUMN["summary"]] = 'Created contact "someone-else@example.org"'
    assert "hash does not match" in tampered(forged, "value.csv")
    # a value dropped from the commitments (shown as a v1 value): the hash names the committed paths
    dropped = [list(r) for r in rows]
    salts = json.loads(dropped[at][COLUMN["salts"]])
    del salts["/resource_name"]
    dropped[at][COLUMN["salts"]] = json.dumps(salts, sort_keys=True, separators=(",", ":"))
    tampered(dropped, "dropped.csv")
    # an erased entry's commitment changed
    rows = list(csv.reader(io.StringIO(erased_export)))
    at = next(i for i, r in enumerate(rows) if '"commitment"' in r[COLUMN["salts"]])
    salts = json.loads(rows[at][COLUMN["salts"]])
    path = next(p for p, s in salts.items() if isinstance(s, dict))
    salts[path] = {"commitment": "0" * 64}
    rows[at][COLUMN["salts"]] = json.dumps(salts, sort_keys=True, separators=(",", ":"))
    assert "hash does not match" in tampered(rows, "commitment.csv")


def test_erasure_refusals_unknown_held_and_roles(tenant: Tenant) -> None:
    address = f"held-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as client:
        contact_life(client, address, "Held", "Person")
        unknown = client.post("/api/v1/erasures", json={"email": f"nobody-{secrets.token_hex(4)}@x.example"})
        assert unknown.status_code == 404, unknown.text
        assert client.post("/api/v1/erasures", json={"email": "not an address"}).status_code == 422
        assert client.post("/api/v1/erasures", json={}).status_code == 422
        hold = _ok(client.post("/api/v1/legal-holds", json={"reason": "litigation"}), 201)
        count = len(entries(client))
        refused = client.post("/api/v1/erasures", json={"email": address})
        assert refused.status_code == 409 and hold["id"] in refused.text, refused.text
        assert len(entries(client)) == count and address in json.dumps(entries(client))
        _ok(client.post(f"/api/v1/legal-holds/{hold['id']}/release"))
        _ok(client.post("/api/v1/erasures", json={"email": address}), 201)
        assert client.post("/api/v1/erasures", json={"email": address}).status_code == 404  # nothing left
    read_key = _ok(
        tenant.session_client().post("/api/v1/api-keys", json={"name": "reader", "scopes": ["read"]}), 201
    )
    with tenant.key_client(read_key["key"]) as reader:
        assert reader.post("/api/v1/erasures", json={"email": address}).status_code == 403


def test_the_app_role_erases_only_through_the_function(server: Server) -> None:
    if server.db.dialect != "postgresql":
        pytest.skip("roles are a PostgreSQL feature; SQLite's triggers are tested by the API tests")
    tenant = make_tenant(server, "Role")
    address = f"role-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as client:
        contact_life(client, address, "Role", "Person")
    with app_role_on(server.db) as url:
        app_db = connect(url)
        try:
            scoped = app_db.for_account(tenant.account_id)
            with scoped.writer() as session, pytest.raises(DBAPIError, match="permission denied"):
                session.execute(
                    text("UPDATE activity_entries SET resource_name = NULL WHERE account_id = :a"),
                    {"a": tenant.account_id},
                )
            uow = UnitOfWork(app_db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
            done = erasure.erase_subscriber(uow, address)
            assert done.entries == 3
            with scoped.reader() as session:
                assert verify_account(session, tenant.account_id).ok
        finally:
            app_db.dispose()
    # even the owner cannot change a hashed column of an entry, erasure record or not
    with server.db.engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
        conn.execute(text("SET LOCAL activitylog.account_id = " + repr(tenant.account_id).replace('"', "'")))
        conn.execute(
            text(
                "UPDATE activity_entries SET action = 'contact.delete' "
                "WHERE account_id = :a AND salts IS NOT NULL"
            ),
            {"a": tenant.account_id},
        )


def test_sqlite_triggers_allow_only_a_recorded_scrub(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL's door is the function, tested above")
    created = accounts.create_account(
        db, name="T", owner_email=f"o-{secrets.token_hex(5)}@example.com", password="pw-123456789012",
        actor=SYSTEM_CLI, context=RequestContext(),
    )  # fmt: skip
    account_id = created.account.id
    uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())
    lst = lists.create_list(uow, "L")
    lists.create_contact(uow, lst.id, {"email": "x@example.com", "first_name": "X", "last_name": None})
    with db.engine.begin() as conn:
        with pytest.raises(DBAPIError, match="append-only"):  # no erasure recorded
            conn.execute(
                text(
                    "UPDATE activity_entries SET resource_name = NULL "
                    "WHERE account_id = :a AND salts IS NOT NULL"
                ),
                {"a": account_id},
            )
        seq = conn.execute(
            text("SELECT max(seq) FROM activity_entries WHERE account_id = :a AND salts IS NOT NULL"),
            {"a": account_id},
        ).scalar_one()
        conn.execute(
            text("INSERT INTO activity_erased (account_id, seq, erase_seq) VALUES (:a, :s, 99)"),
            {"a": account_id, "s": seq},
        )
        with pytest.raises(DBAPIError, match="append-only"):  # recorded, but a hashed column changes
            conn.execute(
                text(
                    "UPDATE activity_entries SET action = 'contact.delete' WHERE account_id = :a AND seq = :s"
                ),
                {"a": account_id, "s": seq},
            )
        with pytest.raises(DBAPIError, match="append-only"):  # the record itself is append-only
            conn.execute(text("DELETE FROM activity_erased WHERE account_id = :a"), {"a": account_id})


def test_the_cli_erases_like_the_api(tenant: Tenant) -> None:
    address = f"cli-{secrets.token_hex(6)}@subscriber.example"
    with tenant.key_client() as client:
        contact_life(client, address, "Cli", "Person")
    done = run_cli("erase", "--account", tenant.account_id, "--email", address, db_url=tenant.server.db.url)
    assert (
        done.returncode == 0 and "erased 3 entries, deleted 2 contacts and the suppression" in done.stdout
    ), done.stdout + done.stderr
    again = run_cli("erase", "--account", tenant.account_id, "--email", address, db_url=tenant.server.db.url)
    assert again.returncode == 1 and "holds that" in again.stdout + again.stderr  # rich wraps lines
    with tenant.key_client() as client:
        listed = entries(client)
        assert address not in json.dumps(listed)
        assert listed[0]["action"] == "contact.erase" and listed[0]["actor"]["id"] == "cli"
        assert _ok(client.get("/api/v1/activity/verify"))["ok"] is True


def _subscriber(db: Database, address: str, updates: int) -> tuple[str, int]:
    """An account with one contact of ``address`` created, updated ``updates`` times and suppressed: the
    entries an erasure of it scrubs, and how many."""
    created = accounts.create_account(
        db, name="T", owner_email=f"o-{secrets.token_hex(5)}@example.com", password="pw-123456789012",
        actor=SYSTEM_CLI, context=RequestContext(),
    )  # fmt: skip
    account_id = created.account.id

    def uow() -> UnitOfWork:
        return UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())

    lst = lists.create_list(uow(), "L")
    contact = lists.create_contact(uow(), lst.id, {"email": address, "first_name": "F0", "last_name": "L"})
    for i in range(1, updates + 1):
        lists.update_contact(uow(), contact.id, {"first_name": f"F{i}"})
    suppressions.suppress(uow(), address, "asked")
    return account_id, 1 + updates + 1


def test_an_erasure_of_more_entries_than_one_batch(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"batched-{secrets.token_hex(6)}@subscriber.example"
    account_id, scrubbed = _subscriber(db, address, updates=5)  # 7 entries: batches of 3, 3 and 1
    monkeypatch.setattr(log_erasure, "ERASE_BATCH", 3)
    statements: list[tuple[str, bool]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        statements.append((statement, many))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())
        done = erasure.erase_subscriber(uow, address)
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert done.entries == scrubbed == 7
    if db.dialect == "postgresql":  # one call of the function per batch
        assert sum("activity_erase(" in s for s, _ in statements) == 3
    else:  # one UPDATE per batch, run for each of its entries (the last batch's one alone)
        assert [many for s, many in statements if s.startswith("UPDATE activity_entries")] == [
            True,
            True,
            False,
        ]
    with db.for_account(account_id).reader() as session:
        verdict = verify_account(session, account_id)
        assert verdict.ok, verdict
        records = session.execute(
            text("SELECT seq, erase_seq FROM activity_erased WHERE account_id = :a ORDER BY seq"),
            {"a": account_id},
        ).all()
        assert len(records) == 7 and {r.erase_seq for r in records} == {done.entry_seq}
        rows = session.execute(
            text("SELECT * FROM activity_entries WHERE account_id = :a AND salts IS NOT NULL ORDER BY seq"),
            {"a": account_id},
        ).all()
        assert [r.seq for r in rows] == [r.seq for r in records]
        assert address not in json.dumps([list(map(str, r)) for r in rows])
        assert all('"commitment"' in r.salts for r in rows)
        assert address not in json.dumps(
            session.execute(
                text("SELECT resource_id FROM activity_affected WHERE account_id = :a"), {"a": account_id}
            )
            .scalars()
            .all()
        )


def _call_erase(
    db: Database, account_id: str, scope: str, erase_seq: int, seqs: list[int | None], cells: int
) -> None:
    """``activity_erase()`` called as the owner, in a transaction scoped to ``scope``."""
    values = ["x"] * cells
    with db.engine.begin() as conn:
        conn.execute(text("SELECT set_config('activitylog.account_id', :s, true)"), {"s": scope})
        conn.execute(
            text(
                "SELECT activity_erase(:a, :e, CAST(:seqs AS bigint[]), CAST(:v AS text[]), "
                "CAST(:v AS text[]), CAST(:v AS text[]), CAST(:v AS text[]), CAST(:v AS text[]), "
                "CAST(:n AS bigint[]), CAST(:g AS text[]))"
            ),
            {"a": account_id, "e": erase_seq, "seqs": seqs, "v": values, "n": [0] * cells, "g": []},
        )


def test_the_erase_function_checks_each_batch(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite has no functions: its triggers are tested above")
    account_id, _ = _subscriber(db, f"door-{secrets.token_hex(6)}@subscriber.example", updates=1)
    other, _ = _subscriber(db, f"else-{secrets.token_hex(6)}@subscriber.example", updates=0)
    with db.for_account(account_id).reader() as session:
        head = session.execute(
            text("SELECT seq FROM activity_heads WHERE account_id = :a"), {"a": account_id}
        ).scalar_one()
        v1, v2 = session.execute(
            text(
                "SELECT min(seq) FILTER (WHERE salts IS NULL), max(seq) FILTER (WHERE salts IS NOT NULL) "
                "FROM activity_entries WHERE account_id = :a"
            ),
            {"a": account_id},
        ).one()
    refusals: list[tuple[str, int, list[int | None], int, str]] = [
        (other, head + 1, [v2], 1, "not scoped to account"),
        (account_id, head + 1, [v2], 2, "one value per seq"),
        (account_id, head + 1, [v2, v2], 2, "distinct and not null"),
        (account_id, head + 1, [v2, None], 2, "distinct and not null"),
        (account_id, head + 2, [v2], 1, f"takes seq {head + 1}, not {head + 2}"),
        (account_id, head, [v2], 1, f"takes seq {head + 1}, not {head}"),
        (account_id, head + 1, [v2, head + 1], 2, f"seq {head + 1} is not before the erasure's entry"),
        (account_id, head + 1, [v2, v1], 2, f"seq {v1} of account {account_id} holds no committed"),
    ]
    for scope, erase_seq, seqs, cells, said in refusals:
        with pytest.raises(DBAPIError, match=said):
            _call_erase(db, account_id, scope, erase_seq, seqs, cells)
    with db.for_account(account_id).reader() as session:
        assert verify_account(session, account_id).ok
        recorded = session.execute(
            text("SELECT count(*) FROM activity_erased WHERE account_id = :a"), {"a": account_id}
        ).scalar_one()
        assert recorded == 0


def test_an_erasure_reads_the_v2_entries_alone(db: Database) -> None:
    """The address can be anywhere in a v2 entry, which no index answers: the search must at least read
    only the v2 entries (a partial index), not the account's whole log. SQLite without statistics, and
    PostgreSQL, each explain the statement the erasure ran."""
    address = f"partial-{secrets.token_hex(6)}@subscriber.example"
    account_id, _ = _subscriber(db, address, updates=1)
    if db.dialect == "postgresql":  # a log like a real one, mostly v1, so the planner's choice is clear
        uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())
        with uow, batched(uow.session):
            log = ResourceRef(type="activity_log", id=account_id, name="Activity log")
            for i in range(3_000):
                uow.record("activity_log.export", log, {"format": {"from": None, "to": f"csv-{i}"}})
            uow.commit()
    with db.engine.begin() as conn:
        if db.dialect == "sqlite":
            conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
        else:  # as after autovacuum
            conn.exec_driver_sql("ANALYZE activity_entries")
    searched: list[tuple[str, Any]] = []

    def seen(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if (
            statement.lstrip().startswith("SELECT")
            and "LIKE" in statement
            and "salts IS NOT NULL" in statement
        ):
            searched.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        erasure.erase_subscriber(
            UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext()), address
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    assert searched, "the erasure searched no entries"
    with db.engine.connect() as conn:
        for statement, params in searched:
            if db.dialect == "sqlite":
                plan = " ".join(
                    r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)
                )
            else:
                conn.exec_driver_sql(
                    "SET enable_seqscan = off"
                )  # a tiny table: would it use the index at all
                plan = " ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))
            assert "ix_activity_entries_personal" in plan, plan
