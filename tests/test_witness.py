"""The witness (``tools/witness.py``, also ``activitylog witness``) against a live server on both engines:
honest growth passes run after run; a history rewritten or truncated by an attacker who holds the database
*and* the signing key (the service's signer made to forget what it signed) is caught, naming the sizes;
so is a checkpoint signed by another key; and when it cannot check, it says so with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from activitylog.config import Settings
from activitylog.log.checkpoints import memory_dir
from activitylog.log.record import RequestContext, ip_key
from activitylog.services import api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Tenant, behind_the_apps_back, free_port, serving
from drills import rebuild_tree, rechain_from, truncate_to

TOOL = Path(__file__).resolve().parent.parent / "tools" / "witness.py"
KEY_ENV = "ACTIVITYLOG_WITNESS_KEY"


def witness(
    url: str,
    account: str,
    state: Path,
    *args: str,
    key: str | None = None,
    cli: bool = False,
    stdlib_only: bool = False,
) -> tuple[int, str]:
    """One run, as cron runs it: the script (isolated; ``-S`` leaves out ``cryptography`` too), or the CLI
    with the key in the environment."""
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if cli:
        command = [sys.executable, "-m", "activitylog", "witness"]
        if key:
            env[KEY_ENV] = key
    else:
        command = [sys.executable, "-I", *(["-S"] if stdlib_only else []), str(TOOL)]
        if key:
            args = (*args, "--key", key)
    done = subprocess.run(
        [*command, "--url", url, "--account", account, "--state", str(state), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines  # one clear line, whatever happened
    return done.returncode, lines[0]


def checkpoint_key(tenant: Tenant) -> str:
    """A key that reads checkpoints and proofs, and nothing else."""
    uow = UnitOfWork(
        tenant.server.db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext()
    )
    return api_keys.create_api_key(uow, name="Witness", scopes=["checkpoint:read"]).secret


def grow(tenant: Tenant, n: int) -> int:
    """Append ``n`` entries; returns the log's size."""
    with tenant.key_client() as client:
        for _ in range(n):
            response = client.post("/api/v1/lists", json={"name": f"List {uuid.uuid4().hex[:8]}"})
            assert response.status_code == 201
        return int(client.get("/api/v1/activity/tree/checkpoint").text.split("\n")[1])


def kept_size(state: Path, tenant: Tenant) -> int:
    return int((state / tenant.account_id / "checkpoint").read_text().split("\n")[1])


def served_verifier_key(url: str, tenant: Tenant) -> str:
    with httpx.Client(base_url=url) as anonymous:
        return str(anonymous.get(f"/api/v1/accounts/{tenant.account_id}/verifier-key").json()["verifier_key"])


def forget_what_the_signer_signed(tenant: Tenant) -> None:
    """The attacker holds the signing key's directory too: the signer's memory of this account goes."""
    origin = served_verifier_key(tenant.server.url, tenant).split("+")[0]
    notes = [p for p in memory_dir(Settings()).glob("*.note") if p.read_text().split("\n")[0] == origin]
    assert len(notes) == 1
    notes[0].unlink()


def test_honest_growth_passes_run_after_run(tenant: Tenant, tmp_path: Path) -> None:
    key, url, state = checkpoint_key(tenant), tenant.server.url, tmp_path / "witness"
    code, said = witness(url, tenant.account_id, state, key=key)
    assert code == 0 and "first checkpoint kept" in said, said
    kept_key = (state / tenant.account_id / "verifier-key").read_text().strip()
    assert kept_key == served_verifier_key(url, tenant)
    for n in (1, 0, 5, 16):
        size, before = grow(tenant, n), kept_size(state, tenant)
        code, said = witness(url, tenant.account_id, state, key=key, cli=n == 5)
        assert code == 0, said
        assert (f"extends the kept one of {before}" if n else "unchanged") in said, said
        assert kept_size(state, tenant) == size
    with tenant.key_client(key) as client:
        served = client.get("/api/v1/activity/tree/checkpoint").text
        assert client.get("/api/v1/activity").status_code == 403  # the witness's key reads no entry
    assert (state / tenant.account_id / "checkpoint").read_text() == served
    assert not (state / tenant.account_id / "conflicting-checkpoint").exists()
    assert not list((state / tenant.account_id).glob(".*"))  # no temporary file left behind


def test_a_rewritten_history_is_caught(tenant: Tenant, tmp_path: Path) -> None:
    key, url, state = checkpoint_key(tenant), tenant.server.url, tmp_path / "witness"
    size = grow(tenant, 8)
    assert witness(url, tenant.account_id, state, key=key)[0] == 0
    with behind_the_apps_back(tenant.server.db) as conn:  # every hash re-chained, the tree rebuilt
        rechain_from(conn, tenant, 6, ip="192.0.2.66", ip_key=ip_key("192.0.2.66"))
        rebuild_tree(conn, tenant)

    code, said = witness(url, tenant.account_id, state, key=key)  # the service's own signer still refuses
    assert code == 2 and "refuses to sign" in said, said

    forget_what_the_signer_signed(tenant)  # now the service signs the forged tree
    code, said = witness(url, tenant.account_id, state, key=key)
    assert code == 1, said
    assert said.startswith("REWRITTEN:") and f"two signed roots for the tree of {size} entries" in said, said

    grown = grow(tenant, 3)  # the forged log moves on: it still does not extend what the witness kept
    for cli in (False, True):
        code, said = witness(url, tenant.account_id, state, key=key, cli=cli)
        assert code == 1, said
        assert f"tree of {grown} entries does not extend the tree of {size}" in said, said
    assert kept_size(state, tenant) == size  # the kept promise is not replaced by the forgery
    evidence = (state / tenant.account_id / "conflicting-checkpoint").read_text()
    assert evidence.split("\n")[1] == str(grown)


def test_a_truncated_log_is_caught(tenant: Tenant, tmp_path: Path) -> None:
    key, url, state = checkpoint_key(tenant), tenant.server.url, tmp_path / "witness"
    size = grow(tenant, 10)
    assert witness(url, tenant.account_id, state, key=key)[0] == 0
    with behind_the_apps_back(tenant.server.db) as conn:
        truncate_to(conn, tenant, 6)
    forget_what_the_signer_signed(tenant)
    code, said = witness(url, tenant.account_id, state, key=key)
    assert code == 1, said
    assert said.startswith("ROLLED BACK:") and "tree of 6 entries" in said and f"tree of {size}" in said
    assert f"entries 7..{size} were removed" in said, said

    grown = grow(tenant, size - 6 + 2)  # the gap filled with other entries: a rewrite, not growth
    code, said = witness(url, tenant.account_id, state, key=key)
    assert code == 1 and f"tree of {grown} entries does not extend the tree of {size}" in said, said
    assert kept_size(state, tenant) == size


def test_a_checkpoint_signed_by_another_key_is_caught(tenant: Tenant, tmp_path: Path) -> None:
    key, state = checkpoint_key(tenant), tmp_path / "witness"
    genuine = served_verifier_key(tenant.server.url, tenant)
    assert witness(tenant.server.url, tenant.account_id, state, key=key)[0] == 0
    grow(tenant, 2)
    with serving(tenant.server.db, signing_key_file=str(tmp_path / "impostor.key")) as impostor:
        assert served_verifier_key(impostor.url, tenant) != genuine  # it even serves its own key
        code, said = witness(impostor.url, tenant.account_id, state, key=key)
        assert code == 1 and said.startswith("BAD SIGNATURE:"), said
        assert "tree size" in said and genuine.split("+")[1] in said, said
        assert (state / tenant.account_id / "verifier-key").read_text().strip() == genuine  # never re-fetched

        # a new witness given the key out of band (as text, or in a file) is not fooled on its first run
        pinned = tmp_path / "vkey"
        pinned.write_text(genuine + "\n")
        for given in (genuine, str(pinned)):
            fresh = tmp_path / f"fresh-{uuid.uuid4().hex[:6]}"
            code, said = witness(impostor.url, tenant.account_id, fresh, "--verifier-key", given, key=key)
            assert code == 1 and said.startswith("BAD SIGNATURE:"), said
        code, said = witness(
            impostor.url,
            tenant.account_id,
            state,
            "--verifier-key",
            served_verifier_key(impostor.url, tenant),
            key=key,
        )
        assert code == 2 and "differs from the key kept" in said, said  # a pin never replaces the kept key
    assert witness(tenant.server.url, tenant.account_id, state, key=key)[0] == 0  # the genuine one still is


def test_it_says_when_it_cannot_check(tenant: Tenant, tmp_path: Path) -> None:
    key, url, state = checkpoint_key(tenant), tenant.server.url, tmp_path / "witness"
    code, said = witness(f"http://127.0.0.1:{free_port()}", tenant.account_id, state, key=key)
    assert code == 2 and said.startswith("CANNOT CHECK: cannot reach"), said
    assert not (state / tenant.account_id / "verifier-key").exists()

    code, said = witness(url, tenant.account_id, state)  # no key, none in the environment
    assert code == 2 and KEY_ENV in said, said
    code, said = witness(url, "../etc", state, key=key)
    assert code == 2 and "--account" in said, said
    code, said = witness("ftp://example.com", tenant.account_id, state, key=key)
    assert code == 2 and "--url" in said, said
    code, said = witness(url, tenant.account_id, state, key="al_not_a_key")
    assert code == 2 and "HTTP 401" in said, said
    code, said = witness(url, tenant.account_id, state, key=key, stdlib_only=True)
    assert code == 2 and "cryptography" in said, said
    done = subprocess.run(
        [sys.executable, "-I", str(TOOL), "--url", url], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "required" in done.stderr

    assert witness(url, tenant.account_id, state, key=key)[0] == 0
    kept = state / tenant.account_id / "checkpoint"
    lines = kept.read_text().split("\n")
    kept.write_text("\n".join([lines[0], str(int(lines[1]) + 100), *lines[2:]]))
    code, said = witness(url, tenant.account_id, state, key=key)  # the kept checkpoint no longer verifies
    assert code == 2 and "state was altered" in said, said

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    code, said = witness(url, tenant.account_id, blocked, key=key)
    assert code == 2 and "witness state" in said, said


def test_a_damaged_state_is_not_trusted_afresh(tenant: Tenant, tmp_path: Path) -> None:
    """A kept checkpoint without its kept key: the witness does not quietly fetch a new key."""
    key, url, state = checkpoint_key(tenant), tenant.server.url, tmp_path / "witness"
    assert witness(url, tenant.account_id, state, key=key)[0] == 0
    (state / tenant.account_id / "verifier-key").unlink()
    code, said = witness(url, tenant.account_id, state, key=key)
    assert code == 2 and "damaged" in said, said


@contextmanager
def redirecting_to(target: str) -> Iterator[tuple[str, list[str | None]]]:
    """A server that answers every request with a redirect to ``target``; records the Authorization it saw."""
    seen: list[str | None] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(307)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_redirect_is_not_followed(tenant: Tenant, tmp_path: Path) -> None:
    """Following it would hand the key to wherever it points."""
    key, state = checkpoint_key(tenant), tmp_path / "witness"
    pinned = served_verifier_key(tenant.server.url, tenant)
    with redirecting_to(tenant.server.url) as (url, seen):
        code, said = witness(url, tenant.account_id, state, "--verifier-key", pinned, key=key)
    assert code == 2 and "HTTP 307" in said and "not followed" in said, said
    assert seen == [f"Bearer {key}"]  # asked once, at the URL it was given
