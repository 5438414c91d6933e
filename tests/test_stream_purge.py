"""A stream behind a purge, on both engines: it steps over each purged range with an ``activity.skipped``
event (after a checkpoint of what came before), lists the skip among its deliveries, and the receiver's
``tools/verify_stream.py`` accepts the gap exactly when the log's own purge entry, proven by a checkpoint,
names it — and reports any other gap, or a forged skip, as tampering."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log import verify_export as vx
from activitylog.log import verify_stream as vs
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.follow import committed_head
from activitylog.log.signing import load_signer
from activitylog.relay.relay import StreamRelay
from activitylog.services import lists, retention, streams
from activitylog.services.uow import UnitOfWork
from factories import cli_uow, new_account
from stream_receiver import receiving
from test_verify_stream import _delivered, run_tool, tool_dir  # noqa: F401 (the fixture)

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.at = NOW - 900 * DAY

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture(scope="module")
def behind(db: Database, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An account 900 days old: its first entries and two lists 800 days ago, a list 700 days ago under a
    legal hold, two lists 600 days ago, one 100 days ago; an unfiltered and a filtered webhook stream from
    seq 1, both behind the purge that then removes two ranges; three lists after it."""
    clock = Clock()
    account = new_account(db, "Purged", clock=clock).account.id

    def uow(clocked: Callable[[], datetime] | None = clock) -> UnitOfWork:
        return cli_uow(db, account, clock=clocked)

    def lists_at(days: int, n: int = 1) -> None:
        clock.at = NOW - days * DAY
        for i in range(n):
            lists.create_list(uow(), f"List {days} {i}")

    lists_at(800, 2)
    with db.for_account(account).read_connection() as conn:
        first_end = committed_head(conn, account)
    lists_at(700)
    lists_at(600, 2)
    lists_at(100)
    retention.create_hold(uow(None), reason="a dispute", since=NOW - 710 * DAY, until=NOW - 690 * DAY)
    settings = Settings(
        database_url=db.url,
        stream_allow_private=True,
        stream_timeout_seconds=2.0,
        stream_checkpoint_entries=2,
    )
    out: dict[str, Any] = {
        "account": account,
        "first": (1, first_end),
        "second": (first_end + 2, first_end + 3),
    }
    relay = StreamRelay(db, settings)
    try:
        with receiving() as whole, receiving() as filtered:
            ids = {}
            for name, receiver, extra in (
                ("whole", whole, {}),
                ("lists", filtered, {"filter": {"action": "list.*"}}),
            ):
                body = {"name": name, "type": "webhook", "url": receiver.url, "from_seq": 1, **extra}
                ids[name] = streams.create_stream(uow(None), body, settings).stream.id
            purged = retention.purge_account(db, account)
            assert purged.plan.ranges == [out["first"], out["second"]]
            out["purge_seq"] = purged.entry_seq
            for i in range(3):
                lists.create_list(uow(None), f"Today {i}")
            for _ in range(100):
                relay.run_once()
                relay.drain()
                if len(whole.entries()) >= 9 and len(filtered.entries()) >= 5:
                    break
            out["whole"], out["lists"] = _delivered(whole), _delivered(filtered)
            out["whole_ids"] = [r.id for r in whole.received]
        for name, sid in ids.items():
            out[f"{name}_deliveries"] = streams.recent_deliveries(db.for_account(account), account, sid)
    finally:
        relay.close()
    out["key"] = CheckpointSigner(settings, load_signer(settings)).verifier_key(account)
    out["dir"] = tmp_path_factory.mktemp("purged")
    return out


def _file(d: dict[str, Any], name: str, lines: list[str]) -> str:
    path = d["dir"] / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def _verdict(d: dict[str, Any], lines: list[str]) -> str:
    try:
        return vs.verify(vs.read_events(lines), vx.parse_verifier_key(d["key"]))
    except vs.Broken as exc:
        return f"TAMPERED: {exc}"
    except vx.CannotCheck as exc:
        return f"CANNOT CHECK: {exc}"


def test_the_stream_steps_over_each_purged_range_and_says_so(behind: dict[str, Any]) -> None:
    account, (a1, b1), (a2, b2) = behind["account"], behind["first"], behind["second"]
    held = b1 + 1
    ids = behind["whole_ids"]
    # the first range at once (nothing delivered before it), then the held entry and a checkpoint of it,
    # then the second range, then everything after, up to the purge entry and past it
    assert ids[:4] == [
        f"{account}:skipped:{a1}-{b1}",
        f"{account}:{held}",
        f"{account}:checkpoint:{held}",
        f"{account}:skipped:{a2}-{b2}",
    ]
    assert f"{account}:{behind['purge_seq']}" in ids
    skipped = [json.loads(line) for line in behind["whole"] if json.loads(line)["type"] == "activity.skipped"]
    assert [s["data"]["skipped"] for s in skipped] == [[a1, b1], [a2, b2]]
    assert {s["data"]["reason"] for s in skipped} == {"purged"}
    assert {s["data"]["purge_seq"] for s in skipped} == {behind["purge_seq"]}
    for name in ("whole", "lists"):
        records = [d for d in behind[f"{name}_deliveries"] if "skipped" in d]
        assert sorted(r["skipped"] for r in records) == [[a1, b1], [a2, b2]], name
        assert {r["reason"] for r in records} == {"purged"}
    # the filtered stream got the lists it matches that are still there, in order
    names = [
        json.loads(line)["data"]["resource"]["name"] for line in behind["lists"] if '"activity.entry"' in line
    ]
    assert names == ["List 700 0", "List 100 0", "Today 0", "Today 1", "Today 2"]


def test_the_receiver_proves_the_gaps_are_the_purges_the_log_names(
    behind: dict[str, Any],
    tool_dir: Path,  # noqa: F811 (the fixture)
) -> None:
    path = _file(behind, "whole.jsonl", behind["whole"])
    done = run_tool(tool_dir, path, "--verifier-key", behind["key"])
    assert done.returncode == 0, done.stdout + done.stderr
    (a2, b2), purge_seq = behind["second"], behind["purge_seq"]
    assert f"seq {a2}-{b2} (purge entry {purge_seq})" in done.stdout and "purged" in done.stdout


def _without(lines: list[str], pick: Callable[[dict[str, Any]], bool]) -> list[str]:
    return [line for line in lines if not pick(json.loads(line))]


def _edited(
    lines: list[str], pick: Callable[[dict[str, Any]], bool], change: Callable[[dict[str, Any]], None]
) -> list[str]:
    out = []
    for line in lines:
        body = json.loads(line)
        if pick(body):
            change(body)
            line = json.dumps(body)
        out.append(line)
    return out


def test_a_gap_that_is_not_a_proven_purge_is_reported(behind: dict[str, Any]) -> None:
    lines, (a2, b2) = behind["whole"], behind["second"]
    after = b2 + 1

    def skip2(b: dict[str, Any]) -> bool:
        return bool(b["type"] == "activity.skipped" and b["data"]["skipped"] == [a2, b2])

    def entry(seq: int) -> Callable[[dict[str, Any]], bool]:
        return lambda b: b["type"] == "activity.entry" and b["data"]["seq"] == seq

    assert _verdict(behind, lines).startswith("OK: ")
    # an entry lost after the gap, or the skip itself lost: missing entries
    assert "missing before checkpoint" in _verdict(behind, _without(lines, entry(after)))
    assert f"seq {a2}-{b2}" in _verdict(behind, _without(lines, skip2))
    # a skip naming an entry that is not a purge of the range, or a range wider than the purge
    not_purge = _edited(lines, skip2, lambda b: b["data"].update(purge_seq=b2 + 1))
    assert "is not a purge of them" in _verdict(behind, not_purge)
    # an entry dropped and passed off as purged: the purge entry does not name it
    wider = _edited(_without(lines, entry(after)), skip2, lambda b: b["data"].update(skipped=[a2, after]))
    verdict = _verdict(behind, wider)
    assert verdict.startswith("TAMPERED: ") and "not a purge of them" in verdict
    # the chain's links across the gap must hold
    unlinked = _edited(lines, skip2, lambda b: b["data"].update(prev_hash="0" * 64))
    assert "does not link to the entry before it" in _verdict(behind, unlinked)
    # without the checkpoint before the gap, what came before it is not proven
    held = behind["first"][1] + 1
    no_proof = _without(lines, lambda b: b["type"] == "activity.checkpoint" and b["data"]["seq"] == held)
    assert _verdict(behind, no_proof).startswith("CANNOT CHECK: ") and f"tree {held}" in _verdict(
        behind, no_proof
    )
