"""Exports: the contract's CSV (formula-safe, canonical changes, hash columns) and JSON Lines, the whole
filtered slice oldest first, verifiable on its own, and themselves logged."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from activitylog.log import verify_export
from activitylog.log.csv_sql import CSV_COLUMNS
from conftest import Tenant, run_cli

DANGEROUS = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tTabbed", "'quoted", "\rCR"]


def _fill(tenant: Tenant) -> list[dict]:  # type: ignore[type-arg]
    with tenant.key_client() as client:
        for name in DANGEROUS:
            # control characters are refused (422); the rest must come out of the CSV neutralised
            assert client.post("/api/v1/lists", json={"name": name}).status_code in (201, 422)
        assert client.post("/api/v1/lists", json={"name": 'Plain, "quoted"'}).status_code == 201
        client.post("/api/v1/sending-domains", json={"domain": "mail.example.com"})
        return client.get("/api/v1/activity", params={"limit": 1000}).json()["data"]  # type: ignore[no-any-return]


def _csv(tenant: Tenant, **params: str) -> tuple[str, dict[str, str]]:
    with tenant.key_client() as client:
        r = client.get("/api/v1/activity/export", params=params)
        assert r.status_code == 200, r.text
        return r.text, dict(r.headers)


def test_csv_is_the_contract_and_round_trips(tenant: Tenant) -> None:
    _fill(tenant)
    body, headers = _csv(tenant)
    assert headers["content-type"].startswith("text/csv")
    assert headers["content-disposition"].startswith(f'attachment; filename="activity-{tenant.account_id}-')
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    with tenant.key_client() as client:
        entries = sorted(
            client.get("/api/v1/activity", params={"limit": 1000}).json()["data"], key=lambda e: e["seq"]
        )
    # the export logged itself before streaming, so it is the slice's last row
    assert [int(r[1]) for r in rows[1:]] == [e["seq"] for e in entries]
    assert rows[-1][CSV_COLUMNS.index("action")] == "activity_log.export"
    for cells, entry in zip(rows[1:], entries, strict=True):
        row = {name: verify_export.unescape(cell) for name, cell in zip(CSV_COLUMNS, cells, strict=True)}
        assert row["resource_name"] == entry["resource"]["name"]
        assert row["actor_id"] == entry["actor"]["id"]
        assert row["on_behalf_of"] is None and cells[CSV_COLUMNS.index("on_behalf_of")] == ""
        assert json.loads(row["changes"] or "") == entry["changes"]
        assert row["changes"] == json.dumps(
            entry["changes"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert row["hash"] == entry["hash"] and row["prev_hash"] == entry["prev_hash"]
    assert verify_export.verify_rows(verify_export.rows_from_csv(io.StringIO(body, newline=""))).ok


def test_cells_that_a_spreadsheet_would_evaluate_are_neutralised(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        lid = client.post("/api/v1/lists", json={"name": "Base"}).json()["id"]
        for evil in ("=1+1", "+SUM(1)", "-3", "@cmd", "'apostrophe"):
            assert client.patch(f"/api/v1/lists/{lid}", json={"name": evil}).status_code == 200
    body, _ = _csv(tenant, resource_id=lid)
    names = [
        cells[CSV_COLUMNS.index("resource_name")] for cells in csv.reader(io.StringIO(body, newline=""))
    ][1:]
    for cell in names:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    assert names[-5:] == ["'=1+1", "'+SUM(1)", "'-3", "'@cmd", "''apostrophe"]
    assert verify_export.verify_rows(verify_export.rows_from_csv(io.StringIO(body, newline=""))).ok


def test_a_filtered_slice_verifies_with_gaps_and_tampering_is_named(tenant: Tenant, tmp_path: Path) -> None:
    with tenant.key_client() as client:
        for i in range(6):
            client.post("/api/v1/lists", json={"name": f"L{i}"})
            client.post("/api/v1/sending-domains", json={"domain": f"m{i}.example.com"})
    body, _ = _csv(tenant, resource_type="sending_domain")
    report = verify_export.verify_rows(verify_export.rows_from_csv(io.StringIO(body, newline="")))
    assert report.ok and report.rows == 6 and len(report.gaps) >= 5

    lines = body.splitlines(keepends=True)
    victim = lines[3]
    seq = victim.split(",")[1]
    path = tmp_path / "tampered.csv"
    path.write_text(
        "".join([*lines[:3], victim.replace("m2.example.com", "evil.example.com", 1), *lines[4:]])
    )
    result = run_cli("verify-export", str(path))
    assert result.returncode == 1 and f"TAMPERED: seq {seq}: hash does not match" in result.stdout

    path.write_text("".join(lines[:2] + lines[3:]))  # a row removed: a gap, not a broken row
    result = run_cli("verify-export", str(path))
    assert result.returncode == 0 and "gaps" in result.stdout

    path.write_text("not,an,export\n1,2,3\n")
    assert run_cli("verify-export", str(path)).returncode == 2


def test_jsonl_export_and_the_export_entry(tenant: Tenant) -> None:
    _fill(tenant)
    with tenant.key_client() as client:
        r = client.get(
            "/api/v1/activity/export",
            params={"format": "jsonl", "action": "list.*,export", "since": "2000-01-01T00:00:00Z"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        assert 'T000000Z-now.jsonl"' in r.headers["content-disposition"]
        lines = [json.loads(line) for line in r.text.splitlines()]
        latest = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]
    assert {e["action"] for e in lines} <= {"list.create", "activity_log.export"}
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)
    assert verify_export.verify_rows(verify_export.flatten(e) for e in lines).ok
    assert latest["action"] == "activity_log.export"
    assert latest["actor"]["id"] == tenant.key_id
    assert latest["resource"] == {"type": "activity_log", "id": tenant.account_id, "name": "Activity log"}
    assert latest["changes"] == {
        "filter": {"from": None, "to": {"action": "list.*,export", "since": "2000-01-01T00:00:00Z"}},
        "format": {"from": None, "to": "jsonl"},
    }


def test_export_needs_log_permission_and_valid_filters(tenant: Tenant) -> None:
    owner = tenant.session_client()
    key = owner.post("/api/v1/api-keys", json={"name": "w", "scopes": ["write"]}).json()["key"]
    with tenant.key_client(key) as client:
        assert client.get("/api/v1/activity/export").status_code == 403
    with tenant.key_client() as client:
        bad = client.get("/api/v1/activity/export", params={"format": "xlsx"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "format"
        assert client.get("/api/v1/activity/export", params={"ip": "1.2.3.4/99"}).status_code == 422


def test_cli_log_table_and_export(tenant: Tenant, tmp_path: Path) -> None:
    url = tenant.server.db.url
    with tenant.key_client() as client:
        client.post("/api/v1/lists", json={"name": "From the shell"})
    table = run_cli("log", "--account", tenant.account_id, "--action", "list.create", db_url=url)
    assert table.returncode == 0 and "From the shell" in table.stdout
    out = tmp_path / "slice.csv"
    exported = run_cli("log", "--account", tenant.account_id, "--format", "csv", "-o", str(out), db_url=url)
    assert exported.returncode == 0, exported.stderr
    assert "wrote" in exported.stderr
    verified = run_cli("verify-export", str(out))
    assert verified.returncode == 0 and "OK:" in verified.stdout
    jsonl = run_cli(
        "log", "--account", tenant.account_id, "--format", "jsonl", "--actor-type", "system", db_url=url
    )
    assert jsonl.returncode == 0
    assert {json.loads(line)["actor"]["type"] for line in jsonl.stdout.splitlines()} == {"system"}
    with tenant.key_client() as client:
        latest = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]
    assert latest["action"] == "activity_log.export" and latest["actor"] == {
        "type": "system",
        "id": "cli",
        "name": "activitylog CLI",
    }
    bad = run_cli("log", "--account", tenant.account_id, "--since", "yesterday", db_url=url)
    assert bad.returncode == 2 and "--since" in bad.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_of_an_empty_slice(tenant: Tenant, fmt: str) -> None:
    with tenant.key_client() as client:
        r = client.get("/api/v1/activity/export", params={"format": fmt, "actor": "usr_nobody"})
    assert r.status_code == 200
    assert r.text == (",".join(CSV_COLUMNS) + "\n" if fmt == "csv" else "")
