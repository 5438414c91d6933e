"""The auditor's side of "prove it": real exports from a live server, with their proof files and signed
manifests, checked by ``tools/verify_export.py`` as an auditor runs it (its own process, ``-I``; ``-S`` where
the standard library alone must do). Honest exports of every shape pass; each attack of issue 13 is caught
with exit 1; anything the tool cannot check is exit 2 with one line, never a traceback."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activitylog.log import actions, notes, verify_export
from activitylog.log.csv_sql import safe_cell
from activitylog.log.record import RequestContext
from activitylog.log.signing import Signer
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Tenant, make_tenant, run_auditor_tool, run_cli

EXPORT = "/api/v1/activity/export"
# Names a spreadsheet would evaluate, and text that must survive byte for byte.
FORMULAS = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "'quoted", "Zürich ✓ 東京"]
TAB = "\tTabbed"  # refused by the API's validation, so written through the service layer
COLUMN = {name: i for i, name in enumerate(verify_export.CSV_HEADER)}


@dataclass
class Export:
    data: Path
    proof: Path
    manifest: Path
    as_of: int


def _verifier_key(tenant: Tenant) -> str:
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        response = anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key")
    assert response.status_code == 200, response.text
    return str(response.json()["verifier_key"])


def _fill(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        for name in FORMULAS:
            assert client.post("/api/v1/lists", json={"name": name}).status_code == 201, name
        client.post("/api/v1/sending-domains", json={"domain": "mail.example.com"})
        lid = client.post("/api/v1/lists", json={"name": "Renamed"}).json()["id"]
        assert client.patch(f"/api/v1/lists/{lid}", json={"name": "=1+1"}).status_code == 200
    uow = UnitOfWork(
        tenant.server.db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext()
    )
    lists.create_list(uow, TAB)


def _export(tenant: Tenant, where: Path, fmt: str = "csv", **filters: str) -> Export:
    """The export, its proof file for the same tree, and its signed manifest, fetched as an auditor would."""
    where.mkdir(parents=True, exist_ok=True)
    with tenant.key_client() as client:
        response = client.get(EXPORT, params={**filters, "format": fmt})
        assert response.status_code == 200, response.text
        as_of = int(response.headers["x-activity-as-of-seq"])
        proof = client.get(f"{EXPORT}/proof", params={**filters, "tree_size": as_of})
        assert proof.status_code == 200, proof.text
        manifest = client.get(f"{EXPORT}/manifest", params={**filters, "format": fmt, "as_of_seq": as_of})
        assert manifest.status_code == 200, manifest.text
    data = where / f"export.{fmt}"
    data.write_bytes(response.content)
    (where / "export.proof.jsonl").write_bytes(proof.content)
    (where / "export.manifest.json").write_bytes(manifest.content)
    return Export(data, where / "export.proof.jsonl", where / "export.manifest.json", as_of)


def _check(
    export: Export, key: str, *extra: str, stdlib_only: bool = False
) -> subprocess.CompletedProcess[str]:
    return run_auditor_tool(
        str(export.data),
        "--proof",
        str(export.proof),
        "--manifest",
        str(export.manifest),
        "--verifier-key",
        key,
        *extra,
        stdlib_only=stdlib_only,
    )


def _one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == code, out
    assert "Traceback" not in out, out
    if code:
        assert len(out.strip().splitlines()) == 1, out
    for needle in needles:
        assert needle in out, out


# ---- honest exports: no false alarm ----
@pytest.mark.parametrize(
    ("fmt", "filters"),
    [
        ("csv", {}),
        ("csv", {"resource_type": "list"}),
        ("csv", {"actor": "usr_nobody"}),  # an empty slice
        ("jsonl", {}),
        ("jsonl", {"action": "list.*", "q": "Zürich"}),
        ("jsonl", {"actor": "usr_nobody"}),
    ],
)
def test_honest_exports_verify(tenant: Tenant, tmp_path: Path, fmt: str, filters: dict[str, str]) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path, fmt, **filters)
    result = _check(export, key)
    _one_line(result, 0, "PROOF OK", f"as of seq {export.as_of}", "MANIFEST OK")
    shown = (
        "the whole log (no filter)"
        if not filters
        else ", ".join(f"{k}={v}" for k, v in sorted(filters.items()))
    )
    assert shown in result.stdout
    rows = len([line for line in export.proof.read_text().splitlines()[1:] if line])
    assert f"all {rows} rows" in result.stdout
    if filters.get("actor") == "usr_nobody":
        assert rows == 0 and "OK: the export holds no rows" in result.stdout
    # the rows alone need nothing beyond the standard library
    _one_line(run_auditor_tool(str(export.data)), 0, "OK")
    # the verifier key may also come from a file the auditor keeps
    (tmp_path / "vkey").write_text(key + "\n")
    _one_line(_check(export, str(tmp_path / "vkey")), 0, "PROOF OK", "MANIFEST OK")


def test_formula_bearing_names_are_guarded_and_verify(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    export = _export(tenant, tmp_path, resource_type="list")
    names = [
        cells[COLUMN["resource_name"]]
        for cells in csv.reader(io.StringIO(export.data.read_text(), newline=""))
    ]
    assert "'" + FORMULAS[0] in names and "'+1" in names and "'-2" in names and "'@SUM(A1)" in names
    assert "''quoted" in names and "'" + TAB in names and FORMULAS[5] in names
    _one_line(_check(export, _verifier_key(tenant)), 0, "PROOF OK", "MANIFEST OK")


# ---- the attacks of issue 13, replayed on real files ----
def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _write_csv(path: Path, rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def _row_named(rows: list[list[str]], name: str) -> list[str]:
    return next(r for r in rows[1:] if r[COLUMN["resource_name"]] == name)


def _rewrite_summary(export: Export) -> str:
    rows = _rows(export.data.read_text())
    row = _row_named(rows, "'-2")
    row[COLUMN["summary"]] = 'Deleted list "-2"'
    _write_csv(export.data, rows)
    return "summary is not the one"


def _remove_guard(export: Export) -> str:
    rows = _rows(export.data.read_text())
    _row_named(rows, "'" + FORMULAS[0])[COLUMN["resource_name"]] = FORMULAS[0]  # a live formula again
    _write_csv(export.data, rows)
    return "lacks its formula guard"


def _needless_guard(export: Export) -> str:
    rows = _rows(export.data.read_text())
    row = _row_named(rows, FORMULAS[5])
    row[COLUMN["resource_name"]] = "'" + FORMULAS[5]  # unescapes to the same value, but is not the rule
    _write_csv(export.data, rows)
    return "a formula guard (') on a cell whose value needs none"


def _duplicate_key(export: Export) -> str:
    rows = _rows(export.data.read_text())
    row = _row_named(rows, "'+1")
    value = json.loads(row[COLUMN["changes"]])
    assert row[COLUMN["changes"]] == '{"name":{"from":null,"to":"+1"}}'
    row[COLUMN["changes"]] = '{"name":{"from":null,"to":"Evil"},' + row[COLUMN["changes"]][1:]
    assert json.loads(row[COLUMN["changes"]]) == value  # still parses to what the hash covers
    _write_csv(export.data, rows)
    return "changes is not the canonical JSON text"


def _spaced_changes(export: Export) -> str:
    rows = _rows(export.data.read_text())
    row = _row_named(rows, "'@SUM(A1)")
    row[COLUMN["changes"]] = json.dumps(json.loads(row[COLUMN["changes"]]))
    _write_csv(export.data, rows)
    return "changes is not the canonical JSON text"


def _edited_cell(export: Export) -> str:
    rows = _rows(export.data.read_text())
    _row_named(rows, "'+1")[COLUMN["ip"]] = "203.0.113.1"
    _write_csv(export.data, rows)
    return "hash does not match"


def _drop_from_csv_only(export: Export) -> str:
    rows = _rows(export.data.read_text())
    _write_csv(export.data, [r for r in rows if r[COLUMN["resource_name"]] != "'-2"])
    return "which the export lacks (a row was removed)"


def _drop_from_proof_only(export: Export) -> str:
    seq = int(_row_named(_rows(export.data.read_text()), "'-2")[COLUMN["seq"]])
    lines = export.proof.read_text().splitlines(keepends=True)
    export.proof.write_text("".join(line for line in lines if not line.startswith(f'{{"seq":{seq},')))
    return "no proof for this row"


def _renumber_proof(export: Export) -> str:
    lines = export.proof.read_text().splitlines(keepends=True)
    first = json.loads(lines[2])
    lines[2] = json.dumps({**first, "seq": first["seq"] + 1}) + "\n"
    export.proof.write_text("".join(lines))
    return f"no proof for this row (next is seq {first['seq'] + 1})"


def _altered_path(export: Export) -> str:
    lines = export.proof.read_text().splitlines(keepends=True)
    proof = json.loads(lines[3])
    proof["hashes"][0] = base64.b64encode(bytes(32)).decode()
    lines[3] = json.dumps(proof) + "\n"
    export.proof.write_text("".join(lines))
    return "its audit path leads to another root"


ATTACKS: dict[str, Callable[[Export], str]] = {
    "rewritten summary": _rewrite_summary,
    "removed formula guard": _remove_guard,
    "needless formula guard": _needless_guard,
    "duplicate-key changes": _duplicate_key,
    "non-canonical changes spacing": _spaced_changes,
    "edited cell": _edited_cell,
    "row removed from the CSV only": _drop_from_csv_only,
    "row missing from the proof file": _drop_from_proof_only,
    "proof line for another seq": _renumber_proof,
    "altered audit path": _altered_path,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_on_a_csv_is_caught(tenant: Tenant, tmp_path: Path, attack: str) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path)
    _one_line(_check(export, key), 0, "PROOF OK", "MANIFEST OK")
    needle = ATTACKS[attack](export)
    result = run_auditor_tool(
        str(export.data), "--proof", str(export.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, "TAMPERED", needle)


def test_a_row_removed_from_both_files_is_caught_by_the_manifest(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path, resource_type="list")
    rows = _rows(export.data.read_text())
    victim = _row_named(rows, "'-2")
    _write_csv(export.data, [r for r in rows if r is not victim])
    lines = export.proof.read_text().splitlines(keepends=True)
    export.proof.write_text("".join(line for line in lines if not line.startswith(f'{{"seq":{victim[1]},')))
    # each remaining row is still proven: only a statement of the whole slice can miss one
    proven = run_auditor_tool(
        str(export.data), "--proof", str(export.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(proven, 0, f"PROOF OK: all {len(rows) - 2} rows")
    _one_line(_check(export, key), 1, "TAMPERED: the manifest lists", "rows were removed or added")


def _checkpoint_of(tenant: Tenant, size: int) -> str:
    with tenant.key_client() as client:
        response = client.get("/api/v1/activity/tree/checkpoint", params={"tree_size": size})
    assert response.status_code == 200, response.text
    return response.text


def test_a_proof_for_another_tree_is_caught(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path)
    lines = export.proof.read_text().splitlines(keepends=True)
    other = export.as_of - 1  # a genuine, signed checkpoint, but of another tree
    export.proof.write_text(
        json.dumps({"checkpoint": _checkpoint_of(tenant, other), "tree_size": other})
        + "\n"
        + "".join(lines[1:])
    )
    result = run_auditor_tool(
        str(export.data), "--proof", str(export.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, "TAMPERED", f"signed tree of {other} entries")
    # a tree_size line that is not the size the checkpoint signs
    head = json.loads(lines[0])
    export.proof.write_text(json.dumps({**head, "tree_size": other}) + "\n" + "".join(lines[1:]))
    result = run_auditor_tool(
        str(export.data), "--proof", str(export.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, f"says tree_size {other}, its signed checkpoint {export.as_of}")


def test_rows_beyond_the_signed_tree_are_caught(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    early = _export(tenant, tmp_path / "early", resource_type="list")
    with tenant.key_client() as client:
        client.post("/api/v1/lists", json={"name": "Later"})
    late = _export(tenant, tmp_path / "late", resource_type="list")
    late.proof.write_bytes(early.proof.read_bytes())  # the newer CSV with the older, smaller tree's proofs
    result = run_auditor_tool(
        str(late.data), "--proof", str(late.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, f"beyond the signed tree of {early.as_of} entries")


def _forged_note(note: str, private: Ed25519PrivateKey) -> str:
    body = note[: note.index("\n\n") + 1]
    return notes.sign(body, body.split("\n", 1)[0], Signer(private))


def test_files_signed_by_another_key_are_caught(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path)
    attacker = Ed25519PrivateKey.generate()
    lines = export.proof.read_text().splitlines(keepends=True)
    head = json.loads(lines[0])
    export.proof.write_text(
        json.dumps({**head, "checkpoint": _forged_note(head["checkpoint"], attacker)})
        + "\n"
        + "".join(lines[1:])
    )
    result = run_auditor_tool(
        str(export.data), "--proof", str(export.proof), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, "TAMPERED: the proof file's checkpoint: no signature by the verifier key")

    manifest = json.loads(export.manifest.read_text())
    body = {k: v for k, v in manifest.items() if k != "signature"}
    body["rows"] -= 1  # re-signed by the attacker, whose key the auditor does not hold
    signature = attacker.sign(verify_export.canonical_text(body).encode())
    export.manifest.write_text(json.dumps({**body, "signature": base64.b64encode(signature).decode()}))
    result = run_auditor_tool(
        str(export.data), "--manifest", str(export.manifest), "--verifier-key", key, stdlib_only=False
    )
    _one_line(result, 1, "TAMPERED: the manifest's signature does not verify")

    # the attacker's own verifier key proves nothing to an auditor who pinned the real one; and the files of
    # one account do not verify with another account's key
    other = make_tenant(tenant.server)
    genuine = _export(tenant, tmp_path / "genuine")
    _one_line(_check(genuine, _verifier_key(other)), 1, "TAMPERED", "the verifier key for")


def test_a_manifest_edited_or_for_another_slice_is_caught(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path, resource_type="list")
    signed = export.manifest.read_text()
    edited = json.loads(signed)
    edited["filter"] = {}
    export.manifest.write_text(json.dumps(edited))
    _one_line(_check(export, key), 1, "TAMPERED: the manifest's signature does not verify")
    other = _export(tenant, tmp_path / "other", resource_type="sending_domain")
    export.manifest.write_bytes(other.manifest.read_bytes())  # genuine, but of another filter and seq
    _one_line(_check(export, key), 1, "TAMPERED: the manifest lists")


def test_jsonl_attacks_are_caught(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    export = _export(tenant, tmp_path, "jsonl")
    honest = export.data.read_text().splitlines(keepends=True)

    def attempt(victim: str, needle: str) -> None:
        export.data.write_text("".join([*honest[:4], victim, *honest[5:]]))
        _one_line(_check(export, key), 1, "TAMPERED", needle)

    entry = json.loads(honest[4])
    attempt(json.dumps({**entry, "summary": "Nothing happened"}) + "\n", "summary is not the one")
    attempt(honest[4].replace('"ip":', '"ip":"203.0.113.9","ip":', 1), "a duplicate key (ip)")
    attempt(json.dumps({**entry, "seq": str(entry["seq"])}) + "\n", "seq has the wrong JSON type")
    attempt(
        json.dumps({**entry, "approved_by": "the CEO"}) + "\n",
        "fields differ from the contract's (approved_by)",
    )
    attempt(
        json.dumps({**entry, "actor": {**entry["actor"], "name": 7}}) + "\n",
        "actor: name has the wrong JSON type",
    )


# ---- what the tool cannot check is exit 2, one line ----
def test_cannot_check_is_exit_2_with_one_line(tenant: Tenant, tmp_path: Path) -> None:
    export = _export(tenant, tmp_path)
    key = _verifier_key(tenant)
    data, proof, manifest = str(export.data), str(export.proof), str(export.manifest)
    # the verifier key always comes from outside the files: without it, a proof or manifest is not checked
    _one_line(run_auditor_tool(data, "--proof", proof), 2, "need --verifier-key")
    _one_line(run_auditor_tool(data, "--manifest", manifest), 2, "need --verifier-key")
    _one_line(run_auditor_tool(data, "--public-key", "signing.pem"), 2, "unrecognized arguments")
    _one_line(run_auditor_tool(data, "--verifier-key", key), 2, "give one")
    _one_line(run_auditor_tool(), 2, "give an export FILE")
    # signatures need the cryptography package: without it (-S), exit 2, never "tampered"
    _one_line(run_auditor_tool(data, "--proof", proof, "--verifier-key", key), 2, "pip install cryptography")
    _one_line(
        run_auditor_tool(data, "--manifest", manifest, "--verifier-key", key), 2, "pip install cryptography"
    )
    bad_key = key[:-4] + "AAA="
    _one_line(
        run_auditor_tool(data, "--proof", proof, "--verifier-key", bad_key, stdlib_only=False),
        2,
        "verifier key",
    )
    _one_line(
        run_auditor_tool(
            data, "--proof", proof, "--verifier-key", str(tmp_path / "nokey"), stdlib_only=False
        ),
        2,
        "is not a verifier key, nor a readable file",
    )
    _one_line(run_auditor_tool(str(tmp_path / "missing.csv")), 2, "CANNOT CHECK")
    (tmp_path / "other.csv").write_text("not,an,export\n")
    _one_line(run_auditor_tool(str(tmp_path / "other.csv")), 2, "CANNOT CHECK: not an activity-log CSV")
    (tmp_path / "latin1.csv").write_bytes(b"\xff\xfe\x00garbage")
    _one_line(run_auditor_tool(str(tmp_path / "latin1.csv")), 2, "CANNOT CHECK")
    _one_line(
        run_auditor_tool(data, "--proof", data, "--verifier-key", key, stdlib_only=False),
        2,
        "does not start with a checkpoint line",
    )


# ---- the shell: --proofs and verify-export pass the files through ----
def test_cli_writes_proofs_against_the_export_tree_and_verifies_them(tenant: Tenant, tmp_path: Path) -> None:
    _fill(tenant)
    key = _verifier_key(tenant)
    url = tenant.server.db.url
    out = tmp_path / "slice.csv"
    exported = run_cli(
        "log",
        "--account",
        tenant.account_id,
        "--resource-type",
        "list",
        "--format",
        "csv",
        "-o",
        str(out),
        "--proofs",
        db_url=url,
    )
    assert exported.returncode == 0, exported.stderr
    proof, manifest = tmp_path / "slice.csv.proof.jsonl", tmp_path / "slice.csv.manifest.json"
    head = json.loads(proof.read_text().splitlines()[0])
    assert head["tree_size"] == json.loads(manifest.read_text())["as_of_seq"]
    verified = run_cli(
        "verify-export",
        str(out),
        "--proof",
        str(proof),
        "--manifest",
        str(manifest),
        "--verifier-key",
        key,
        db_url=url,
    )
    _one_line(verified, 0, "PROOF OK", "MANIFEST OK", "filter resource_type=list")
    rows = _rows(out.read_text())
    _write_csv(out, [r for r in rows if r[COLUMN["resource_name"]] != "'-2"])
    tampered = run_cli("verify-export", str(out), "--proof", str(proof), "--verifier-key", key, db_url=url)
    _one_line(tampered, 1, "TAMPERED")
    refused = run_cli("log", "--account", tenant.account_id, "--proofs", db_url=url)
    assert refused.returncode == 2 and "--proofs" in refused.stderr


# ---- the service side of a manifest ----
def test_a_manifest_beyond_the_head_is_a_422_naming_as_of_seq(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        head = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]["seq"]
        response = client.get(f"{EXPORT}/manifest", params={"as_of_seq": head + 5})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == "as_of_seq" and error["message"].startswith("as_of_seq:"), error
        assert "tree_size" not in error["message"]
        assert client.get(f"{EXPORT}/manifest", params={"as_of_seq": head}).status_code == 200


# ---- unit: the rules the tool holds exports to ----
def test_every_action_has_a_summary_and_the_rule_lives_once() -> None:
    assert actions.summarize is verify_export.summarize
    for action in actions.ALL_ACTIONS:
        assert verify_export.summarize(action, "X")
    with pytest.raises(KeyError):
        verify_export.summarize("stream.frobnicate", "X")


@pytest.mark.parametrize(
    ("cell", "ok"),
    [
        ("plain", True), ("", True), ("'=1", True), ("''x", True), ("'\tx", True), ("'-2", True),
        ("=1", False), ("+1", False), ("-2", False), ("@x", False), ("\tx", False), ("\rx", False),
        ("\nx", False), ("'x", False), ("'", False), ("'Zürich", False),
    ],
)  # fmt: skip
def test_the_guard_rule_is_exactly_the_contracts(cell: str, ok: bool) -> None:
    assert (verify_export.guard_problem(cell) is None) is ok
    if ok and cell:
        assert safe_cell(verify_export.unescape(cell)) == cell


def test_one_gap_is_one_gap() -> None:
    report = verify_export.Report(rows=2, first_seq=1, last_seq=3, head_hash="h", gaps=[(2, 2)])
    assert "; 1 gap (not in the slice: 2)" in verify_export.describe(report)
