"""The tree from outside, through the API: checkpoints, proofs and the proof file check against each other
with the auditor's code; bad sizes are a 4xx naming the parameter; ``checkpoint:read`` sees proofs and no
entry content."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from activitylog.log.verify_export import (
    consistency_holds,
    inclusion_root,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
)
from conftest import Tenant, make_tenant


def _b(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def _grow(client: httpx.Client, n: int) -> None:
    for i in range(n):
        assert (
            client.post("/api/v1/lists", json={"name": f"List {uuid.uuid4().hex[:6]} {i}"}).status_code == 201
        )


def _verifier_key(tenant: Tenant) -> str:
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        response = anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key")
    assert response.status_code == 200
    body = response.json()
    assert body["verifier_key"].startswith(body["origin"] + "+") and body["origin"].endswith(
        tenant.account_id
    )
    return str(body["verifier_key"])


def test_checkpoints_and_proofs_check_with_the_auditors_code(tenant: Tenant) -> None:
    key = parse_verifier_key(_verifier_key(tenant))
    with tenant.key_client() as client:
        _grow(client, 4)
        old = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)
        _grow(client, 9)
        new = open_checkpoint(client.get("/api/v1/activity/tree/checkpoint").text, key)
        assert new.size > old.size >= 7
        proof = client.get(
            "/api/v1/activity/tree/consistency", params={"old_size": old.size, "tree_size": new.size}
        ).json()
        assert consistency_holds(old.size, new.size, old.root, new.root, _b(proof["hashes"]))
        for seq in (1, 2, old.size, new.size - 1, new.size):
            entry = client.get(f"/api/v1/activity/{seq}").json()
            body = client.get(
                "/api/v1/activity/tree/inclusion", params={"seq": seq, "tree_size": new.size}
            ).json()
            assert body["leaf_index"] == seq - 1 and body["tree_size"] == new.size
            assert base64.b64decode(body["leaf_hash"]) == leaf_hash(entry["hash"])
            assert inclusion_root(seq - 1, new.size, leaf_hash(entry["hash"]), _b(body["hashes"])) == new.root
        historic = open_checkpoint(
            client.get("/api/v1/activity/tree/checkpoint", params={"tree_size": old.size}).text, key
        )
        assert historic == old  # the same tree signs the same way (Ed25519 is deterministic)
        same = client.get("/api/v1/activity/tree/consistency", params={"old_size": 5, "tree_size": 5}).json()
        assert same["hashes"] == []


def test_the_proof_file_proves_every_row_of_a_filtered_export(tenant: Tenant) -> None:
    key = parse_verifier_key(_verifier_key(tenant))
    with tenant.key_client() as client:
        _grow(client, 6)
        client.post("/api/v1/sending-domains", json={"domain": f"d{uuid.uuid4().hex[:6]}.example.com"})
        export = client.get("/api/v1/activity/export", params={"resource_type": "list", "format": "jsonl"})
        as_of = int(export.headers["x-activity-as-of-seq"])
        _grow(client, 2)  # after the export: not in its tree
        proof = client.get(
            "/api/v1/activity/export/proof", params={"resource_type": "list", "tree_size": as_of}
        )
    assert proof.status_code == 200 and "attachment" in proof.headers["content-disposition"]
    first, *lines = [json.loads(line) for line in proof.text.splitlines()]
    signed = open_checkpoint(first["checkpoint"], key)
    assert first["tree_size"] == signed.size == as_of
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert [p["seq"] for p in lines] == [r["seq"] for r in rows] and len(rows) == 6
    for row, line in zip(rows, lines, strict=True):
        assert (
            inclusion_root(row["seq"] - 1, as_of, leaf_hash(row["hash"]), _b(line["hashes"])) == signed.root
        )


@pytest.mark.parametrize(
    ("path", "params", "named"),
    [
        ("/tree/checkpoint", {"tree_size": 10_000}, "tree_size"),
        ("/tree/checkpoint", {"tree_size": 0}, "tree_size"),
        ("/tree/inclusion", {"seq": 1, "tree_size": 10_000}, "tree_size"),
        ("/tree/inclusion", {"seq": 0, "tree_size": 2}, "seq"),
        ("/tree/inclusion", {"seq": 3, "tree_size": 2}, "seq"),
        ("/tree/inclusion", {"seq": 1}, "tree_size"),
        ("/tree/consistency", {"old_size": 0, "tree_size": 2}, "old_size"),
        ("/tree/consistency", {"old_size": 3, "tree_size": 2}, "old_size"),
        ("/tree/consistency", {"old_size": 1, "tree_size": 10_000}, "tree_size"),
        ("/export/proof", {"tree_size": 10_000}, "tree_size"),
    ],
)
def test_sizes_the_log_does_not_have_are_refused(
    tenant: Tenant, path: str, params: dict[str, int], named: str
) -> None:
    with tenant.key_client() as client:
        response = client.get(f"/api/v1/activity{path}", params=params)
    assert 400 <= response.status_code < 500 and response.status_code != 404, response.text
    assert named in response.json()["error"]["message"], response.text


def test_checkpoint_read_sees_proofs_and_no_entries(tenant: Tenant) -> None:
    owner = tenant.session_client()
    issued = owner.post("/api/v1/api-keys", json={"name": "Witness", "scopes": ["checkpoint:read"]}).json()
    owner.close()
    with tenant.key_client(issued["key"]) as witness:
        assert witness.get("/api/v1/activity/tree/checkpoint").status_code == 200
        assert (
            witness.get("/api/v1/activity/tree/inclusion", params={"seq": 1, "tree_size": 1}).status_code
            == 200
        )
        for content in ("/api/v1/activity", "/api/v1/activity/1", "/api/v1/activity/export", "/api/v1/lists"):
            assert witness.get(content).status_code == 403, content
        assert witness.get("/api/v1/activity/export/proof").status_code == 403  # lists the slice's seqs


def test_proofs_are_per_account(tenant: Tenant) -> None:
    other = make_tenant(tenant.server)
    with tenant.key_client() as client, other.key_client() as theirs:
        _grow(client, 3)
        mine = client.get("/api/v1/activity/tree/checkpoint").text
        assert (
            theirs.get("/api/v1/activity/tree/inclusion", params={"seq": 6, "tree_size": 6}).status_code
            == 422
        )
    with pytest.raises(ValueError, match="the checkpoint is for"):
        open_checkpoint(mine, parse_verifier_key(_verifier_key(other)))


def test_the_verifier_key_answers_for_any_well_formed_account(tenant: Tenant) -> None:
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        known = anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key")
        unknown = anonymous.get("/api/v1/accounts/acc_01JZZZZZZZZZZZZZZZZZZZZZZZ/verifier-key")
        bad = anonymous.get("/api/v1/accounts/not-an-account/verifier-key")
    assert known.status_code == unknown.status_code == 200
    assert known.json()["verifier_key"].split("+")[2] == unknown.json()["verifier_key"].split("+")[2]
    assert bad.status_code == 422 and "account_id" in bad.json()["error"]["message"]
