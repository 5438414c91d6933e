"""The service's checkpoints and proofs, checked by a verifier someone else wrote: Go's
``golang.org/x/mod/sumdb/note`` and ``golang.org/x/mod/sumdb/tlog`` (the Go checksum database's own code),
driven by ``tests/go/checkpointcheck``. It must accept what a live server serves on both engines, and
reject a tampered proof, a checkpoint signed by another key and a wrong leaf."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activitylog.log import notes
from activitylog.log.signing import Signer
from conftest import Tenant

ROOT = Path(__file__).resolve().parent.parent
GOPATH = "/usr/share/gocode"  # Debian's golang-golang-x-mod-dev installs golang.org/x/mod here
M, N = 13, 37  # the two checkpoints' sizes: neither a power of two, 16 and 32 between them


@pytest.fixture(scope="session")
def checkpointcheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip("Go is not installed (apt-get install golang-go golang-golang-x-mod-dev; .ci/run does)")
    out = tmp_path_factory.mktemp("go")
    env = {
        **os.environ,
        "GOPATH": GOPATH,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out / "cache"),
    }
    binary = out / "checkpointcheck"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "./tests/go/checkpointcheck"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, f"go build failed (is golang-golang-x-mod-dev installed?):\n{built.stderr}"
    return binary


class Checker:
    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir

    def __call__(self, vkey: str, proofs: dict[str, Any], *, stdin: bool = True) -> tuple[int, str]:
        key_file = self.workdir / f"vkey-{uuid.uuid4().hex[:8]}"
        key_file.write_text(vkey + "\n")
        args = [str(self.binary), "-vkey", str(key_file)]
        document = json.dumps(proofs)
        if not stdin:
            proof_file = key_file.with_suffix(".json")
            proof_file.write_text(document)
            args.append(str(proof_file))
        done = subprocess.run(
            args,
            input=document if stdin else None,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, (done.stdout + done.stderr).strip()


@pytest.fixture
def check(checkpointcheck: Path, tmp_path: Path) -> Checker:
    return Checker(checkpointcheck, tmp_path)


def _head(client: httpx.Client) -> int:
    response = client.get("/api/v1/activity/tree/checkpoint")
    assert response.status_code == 200, response.text
    return int(response.text.split("\n")[1])


def _grow_to(client: httpx.Client, size: int) -> None:
    head = _head(client)
    assert head <= size, f"the new account already has {head} entries"
    for _ in range(size - head):
        name = f"List {uuid.uuid4().hex[:8]}"
        assert client.post("/api/v1/lists", json={"name": name}).status_code == 201
    assert _head(client) == size


def _checkpoint(client: httpx.Client, size: int | None = None) -> str:
    params = {"tree_size": size} if size is not None else {}
    response = client.get("/api/v1/activity/tree/checkpoint", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return response.text


def _consistency(client: httpx.Client, old: int, new: int) -> dict[str, Any]:
    response = client.get("/api/v1/activity/tree/consistency", params={"old_size": old, "tree_size": new})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _inclusion(client: httpx.Client, seq: int, size: int) -> dict[str, Any]:
    response = client.get("/api/v1/activity/tree/inclusion", params={"seq": seq, "tree_size": size})
    assert response.status_code == 200, response.text
    entry = client.get(f"/api/v1/activity/{seq}").json()
    return {**response.json(), "seq": seq, "entry_hash": entry["hash"]}


@pytest.fixture
def served(tenant: Tenant) -> Iterator[tuple[str, dict[str, Any]]]:
    """The verifier key and, from the live server: checkpoints M and N (with entries appended between),
    checkpoints of the power-of-two sizes 1, 16 and 32, consistency proofs between them, and inclusion
    proofs for the first and last entries and others, in trees of both kinds of size."""
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        vkey = anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key").json()["verifier_key"]
    with tenant.key_client() as client:
        _grow_to(client, M)
        old = _checkpoint(client)
        _grow_to(client, N)
        new = _checkpoint(client)
        checkpoints = [old, new, *(_checkpoint(client, size) for size in (1, 16, 32))]
        consistency = [
            _consistency(client, a, b) for a, b in ((M, N), (1, N), (16, N), (M, 16), (16, 32), (N, N))
        ]
        inclusion = [
            _inclusion(client, seq, size)
            for seq, size in (
                (1, 1),
                (1, M),
                (1, N),
                (M, M),
                (M, N),
                (16, 16),
                (9, 16),
                (17, 32),
                (32, 32),
                (N - 1, N),
                (N, N),
            )
        ]
    yield vkey, {"checkpoints": checkpoints, "consistency": consistency, "inclusion": inclusion}


def test_go_accepts_the_live_servers_checkpoints_and_proofs(
    check: Checker, served: tuple[str, dict[str, Any]]
) -> None:
    vkey, proofs = served
    assert [c.split("\n")[1] for c in proofs["checkpoints"]] == [str(M), str(N), "1", "16", "32"]
    for stdin in (True, False):
        code, said = check(vkey, proofs, stdin=stdin)
        assert code == 0, said
        assert said.startswith("OK: 5 checkpoints") and "6 consistency and 11 inclusion" in said, said


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _only(proofs: dict[str, Any], **parts: list[Any]) -> dict[str, Any]:
    return {"checkpoints": proofs["checkpoints"], "consistency": [], "inclusion": [], **parts}


def test_go_rejects_a_tampered_proof(check: Checker, served: tuple[str, dict[str, Any]]) -> None:
    vkey, proofs = served
    consistency = proofs["consistency"][0]
    for i in range(len(consistency["hashes"])):
        hashes = list(consistency["hashes"])
        hashes[i] = _flip(hashes[i])
        code, said = check(vkey, _only(proofs, consistency=[{**consistency, "hashes": hashes}]))
        assert code == 1 and f"consistency {M} -> {N}" in said and "does not extend" in said, said
    shortened = {**consistency, "hashes": consistency["hashes"][:-1]}
    assert check(vkey, _only(proofs, consistency=[shortened]))[0] == 1
    swapped = {**consistency, "old_size": N, "tree_size": M}  # backwards: a smaller tree cannot extend
    assert check(vkey, _only(proofs, consistency=[swapped]))[0] == 1

    path = next(p for p in proofs["inclusion"] if p["seq"] == M and p["tree_size"] == N)
    for i in range(len(path["hashes"])):
        hashes = list(path["hashes"])
        hashes[i] = _flip(hashes[i])
        code, said = check(vkey, _only(proofs, inclusion=[{**path, "hashes": hashes}]))
        assert code == 1 and f"inclusion of seq {M} in tree {N}" in said, said
    moved = {**path, "seq": M + 1, "leaf_index": M}  # the right path, claimed for the next leaf
    assert check(vkey, _only(proofs, inclusion=[moved]))[0] == 1
    longer = {**path, "hashes": [*path["hashes"], path["hashes"][0]]}
    assert check(vkey, _only(proofs, inclusion=[longer]))[0] == 1


def test_go_rejects_a_wrong_leaf(check: Checker, served: tuple[str, dict[str, Any]]) -> None:
    vkey, proofs = served
    by_seq = {(p["seq"], p["tree_size"]): p for p in proofs["inclusion"]}
    first, last = by_seq[(1, N)], by_seq[(N, N)]
    for path, other in ((first, last), (last, first)):
        wrong = {**path, "entry_hash": other["entry_hash"]}
        code, said = check(vkey, _only(proofs, inclusion=[wrong]))
        assert code == 1 and f"seq {path['seq']} in tree {N}" in said and "audit path" in said, said
    altered = bytes.fromhex(first["entry_hash"])
    altered = bytes([altered[0] ^ 1]) + altered[1:]
    code, said = check(vkey, _only(proofs, inclusion=[{**first, "entry_hash": altered.hex()}]))
    assert code == 1, said
    lying = {**first, "leaf_hash": last["leaf_hash"]}  # a path that holds, beside a leaf hash that does not
    code, said = check(vkey, _only(proofs, inclusion=[lying]))
    assert code == 1 and "leaf_hash" in said, said


def test_go_rejects_a_checkpoint_signed_by_another_key(
    check: Checker, served: tuple[str, dict[str, Any]], tenant: Tenant
) -> None:
    vkey, proofs = served
    genuine = proofs["checkpoints"][1]
    body = genuine[: genuine.index("\n\n") + 1]
    name = body.split("\n")[0]
    impostor = Signer(Ed25519PrivateKey.generate())
    forged = notes.sign(body, name, impostor)  # the same tree, the same origin, another key
    code, said = check(vkey, _only(proofs, checkpoints=[forged]))
    assert code == 1 and "checkpoint 1" in said and "signature" in said, said
    # ... and the impostor's own verifier key does check it: the key, not the note, is the trust
    assert check(notes.verifier_key(name, impostor.public_raw), _only(proofs, checkpoints=[forged]))[0] == 0

    lines = body.split("\n")
    grown = "\n".join([lines[0], str(N + 1), *lines[2:]])  # a body altered under a genuine signature
    code, said = check(vkey, _only(proofs, checkpoints=[grown + genuine[len(body) :]]))
    assert code == 1 and "signature" in said, said

    with httpx.Client(base_url=tenant.server.url) as anonymous:
        other = anonymous.get(f"/api/v1/accounts/acc_{uuid.uuid4().hex[:20]}/verifier-key").json()
    code, said = check(other["verifier_key"], _only(proofs))  # another account's key: another origin
    assert code == 1 and "signature" in said, said


def test_go_refuses_proofs_it_cannot_check(check: Checker, served: tuple[str, dict[str, Any]]) -> None:
    vkey, proofs = served
    assert check(vkey, {"checkpoints": []})[0] == 2
    assert check("not a key", proofs)[0] == 2
    orphan = {**proofs["consistency"][0], "old_size": 2}  # no checkpoint of size 2 was given
    code, said = check(vkey, _only(proofs, consistency=[orphan]))
    assert code == 2 and "no checkpoint of tree size 2" in said, said
