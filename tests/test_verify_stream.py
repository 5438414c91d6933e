"""``tools/verify_stream.py`` on what real streams delivered (webhooks, json and OCSF, and JetStream), run
as a receiver runs it — the standard library and ``cryptography`` only, the package not importable — and on
the same deliveries with an entry missing, altered or forged, and without a checkpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.record import RequestContext
from activitylog.log.signing import load_signer
from activitylog.log.verify_export import note_key_id
from activitylog.relay.relay import StreamRelay
from activitylog.services import accounts, lists, streams
from activitylog.services.uow import SYSTEM_CLI
from factories import cli_uow, new_account
from stream_receiver import Receiver, receiving
from test_stream_nats import _delete, _nats_up, _stored

TOOLS = Path(__file__).resolve().parent.parent / "tools"


@pytest.fixture(scope="module")
def tool_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The two files a receiver copies, alone in a directory."""
    where = tmp_path_factory.mktemp("receiver")
    for name in ("verify_stream.py", "verify_export.py"):
        shutil.copy(TOOLS / name, where / name)
    return where


def run_tool(tool_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # -S: no site (the activitylog package is not importable); PYTHONPATH brings cryptography alone along
    env = {"PYTHONPATH": sysconfig.get_paths()["purelib"], "PATH": os.environ.get("PATH", "")}
    return subprocess.run(
        [sys.executable, "-S", str(tool_dir / "verify_stream.py"), *args],
        capture_output=True, text=True, timeout=120, check=False, env=env, input=stdin,
    )  # fmt: skip


def _delivered(receiver: Receiver) -> list[str]:
    """The bodies the receiver acknowledged, as it stored them: one per line, duplicates and all."""
    with receiver.lock:
        return [r.body.decode() for r in receiver.received if getattr(r, "status", 200) < 300]


@pytest.fixture(scope="module")
def deliveries(db: Database, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An account with a json and an ocsf webhook stream, 12 entries after them, a checkpoint every 5."""
    account = new_account(db, "Received").account.id
    settings = Settings(
        database_url=db.url,
        stream_allow_private=True,
        stream_timeout_seconds=2.0,
        stream_checkpoint_entries=5,
    )
    relay = StreamRelay(db, settings)
    out: dict[str, Any] = {"account": account}
    try:
        with receiving() as as_json, receiving() as as_ocsf:
            for receiver, fmt in ((as_json, "json"), (as_ocsf, "ocsf")):
                body = {"name": fmt, "type": "webhook", "url": receiver.url, "format": fmt}
                streams.create_stream(cli_uow(db, account), body, settings)
            for i in range(12):
                lists.create_list(cli_uow(db, account), f"List {i}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                relay.run_once()
                relay.drain()
                if len(as_json.entries()) >= 14 and len(as_ocsf.entries()) >= 13:
                    break
                time.sleep(0.05)
            out["json"], out["ocsf"] = _delivered(as_json), _delivered(as_ocsf)
    finally:
        relay.close()
    signer = CheckpointSigner(settings, load_signer(settings))
    out["key"] = signer.verifier_key(account)  # obtained out of band
    out["dir"] = tmp_path_factory.mktemp("deliveries")
    return out


def _file(d: dict[str, Any], name: str, lines: list[str]) -> str:
    path = d["dir"] / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _types(lines: list[str]) -> list[str]:
    return [json.loads(line)["type"] for line in lines]


@pytest.mark.parametrize("fmt", ["json", "ocsf"])
def test_what_a_stream_delivered_is_proven_complete(
    deliveries: dict[str, Any], tool_dir: Path, fmt: str
) -> None:
    lines = deliveries[fmt]
    assert _types(lines).count("activity.checkpoint") == 2
    # a retry and a replay deliver the same events again; the receiver stored them as they came
    path = _file(deliveries, f"{fmt}.jsonl", [*lines, lines[3], lines[0]])
    done = run_tool(tool_dir, path, "--verifier-key", deliveries["key"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: seq ") and "2 checkpoints checked" in done.stdout
    assert "after it not yet covered" in done.stdout and "2 duplicates" in done.stdout
    assert deliveries["account"] in done.stdout
    from_stdin = run_tool(tool_dir, "-", "--verifier-key", deliveries["key"], stdin="\n".join(lines))
    assert from_stdin.returncode == 0, from_stdin.stdout


def _edit(line: str, change: Any) -> str:
    body = json.loads(line)
    change(body)
    return json.dumps(body)


def test_a_missing_altered_or_forged_entry_fails(deliveries: dict[str, Any], tool_dir: Path) -> None:
    lines = deliveries["json"]
    key = deliveries["key"]
    entries = [i for i, t in enumerate(_types(lines)) if t == "activity.entry"]

    def verdict(name: str, changed: list[str], *extra: str) -> subprocess.CompletedProcess[str]:
        return run_tool(tool_dir, _file(deliveries, name, changed), "--verifier-key", key, *extra)

    missing = verdict("missing.jsonl", [line for i, line in enumerate(lines) if i != entries[2]])
    assert missing.returncode == 1 and "missing before checkpoint" in missing.stdout, missing.stdout

    altered = list(lines)
    altered[entries[1]] = _edit(lines[entries[1]], lambda b: b["data"].update(summary="Deleted nothing"))
    done = verdict("altered.jsonl", altered)
    assert done.returncode == 1 and "TAMPERED: seq" in done.stdout, done.stdout

    def rehash(body: dict[str, Any]) -> None:
        body["data"]["resource"]["name"] = "Forged"
        body["data"]["summary"] = "Created list Forged"
        body["data"]["hash"] = "0" * 64

    forged = list(lines)
    forged[entries[1]] = _edit(lines[entries[1]], rehash)
    assert verdict("forged.jsonl", forged).returncode == 1

    two_faced = [*lines, _edit(lines[entries[1]], lambda b: b["data"].update(request_id="req_other"))]
    done = verdict("twice.jsonl", two_faced)
    assert done.returncode == 1 and "delivered twice with different content" in done.stdout

    no_checkpoints = [
        line for line, t in zip(lines, _types(lines), strict=True) if t != "activity.checkpoint"
    ]
    done = verdict("none.jsonl", no_checkpoints)
    assert done.returncode == 2 and "no checkpoint" in done.stdout, done.stdout

    name = key.split("+")[0]
    public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    encoded = base64.b64encode(bytes([1]) + public).decode()
    other = f"{name}+{note_key_id(name, public).hex()}+{encoded}"
    done = run_tool(tool_dir, _file(deliveries, "ok.jsonl", lines), "--verifier-key", other)
    assert done.returncode == 1 and "checkpoint" in done.stdout, done.stdout

    assert run_tool(tool_dir, _file(deliveries, "ok.jsonl", lines)).returncode == 2  # no key: cannot check
    assert run_tool(tool_dir, str(deliveries["dir"] / "absent.jsonl"), "--verifier-key", key).returncode == 2


def test_ocsf_events_must_agree_with_the_entry_they_carry(deliveries: dict[str, Any], tool_dir: Path) -> None:
    lines = deliveries["ocsf"]
    first = next(i for i, t in enumerate(_types(lines)) if t == "activity.entry")
    changed = list(lines)
    changed[first] = _edit(lines[first], lambda b: b["data"]["unmapped"].update(hash="f" * 64))
    done = run_tool(
        tool_dir, _file(deliveries, "ocsf-bad.jsonl", changed), "--verifier-key", deliveries["key"]
    )
    assert done.returncode == 1 and "unmapped hashes" in done.stdout, done.stdout


def test_jetstream_payloads_are_proven_the_same_way(db: Database, tool_dir: Path, tmp_path: Path) -> None:
    if not _nats_up():
        pytest.skip("no NATS server (.ci/run starts one)")
    email = f"owner-{uuid.uuid4().hex[:10]}@example.com"
    account = accounts.create_account(
        db, name="JS", owner_email=email, password="correct horse battery", actor=SYSTEM_CLI,
        context=RequestContext(),
    ).account.id  # fmt: skip
    subject = f"vs{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=db.url, stream_timeout_seconds=5.0, stream_checkpoint_entries=4)
    streams.create_stream(cli_uow(db, account), {"name": "js", "type": "nats", "subject": subject}, settings)
    for i in range(6):
        lists.create_list(cli_uow(db, account), f"List {i}")
    relay = StreamRelay(db, settings)
    name = subject.upper()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            relay.run_once()
            relay.drain()
            messages, _info = asyncio.run(_stored(name))
            if len(messages) >= 8:  # 7 entries and the checkpoint after the 4th
                break
            time.sleep(0.1)
    finally:
        relay.close()
    try:
        payloads = [m.data.decode() for m in messages]
    finally:
        asyncio.run(_delete(name))
    assert _types(payloads).count("activity.checkpoint") == 1
    path = tmp_path / "nats.jsonl"
    path.write_text("\n".join(payloads) + "\n", encoding="utf-8")
    key = CheckpointSigner(settings, load_signer(settings)).verifier_key(account)
    done = run_tool(tool_dir, str(path), "--verifier-key", key)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 entries after it not yet covered" in done.stdout
