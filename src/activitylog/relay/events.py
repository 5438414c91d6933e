"""The events a stream carries, as bytes: the same body on every attempt, so a retry is the same event.

``webhook-id`` (and JetStream's ``Nats-Msg-Id``) is ``<account_id>:<seq>`` for an entry and
``<account_id>:checkpoint:<size>`` for a checkpoint (``<account_id>:skipped:<from>-<to>`` for a purged
range the stream stepped over), so a receiver de-duplicates by it; the body is
``{"type", "timestamp", "data"}`` (Standard Webhooks), ``timestamp`` being the entry's (or the checkpoint's
entry's) instant — not the attempt's, which is the ``webhook-timestamp`` header.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from activitylog.log.entry import entry_to_api
from activitylog.log.follow import PurgedRun
from activitylog.relay.ocsf import to_ocsf

ENTRY = "activity.entry"
CHECKPOINT = "activity.checkpoint"
SKIPPED = "activity.skipped"
TEST = "activity.test"
PURGED = "purged"


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    seq: int | None
    subject_suffix: str  # what a NATS subject ends with: <resource_type>.<verb>, or checkpoint
    body: bytes


def _body(type_: str, timestamp: str, data: Any) -> bytes:
    payload = {"type": type_, "timestamp": timestamp, "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_event(row: Any, fmt: str) -> Event:
    entry = entry_to_api(row)
    data = to_ocsf(entry) if fmt == "ocsf" else entry
    rtype, _, verb = entry["action"].partition(".")
    return Event(
        id=f"{entry['account_id']}:{entry['seq']}",
        type=ENTRY,
        seq=entry["seq"],
        subject_suffix=f"{rtype}.{verb}",
        body=_body(ENTRY, entry["occurred_at"], data),
    )


def checkpoint_event(
    account_id: str, seq: int, entry_hash: str, occurred_at: str, note: str, inclusion: list[bytes]
) -> Event:
    """Entry ``seq``'s audit path in the tree of size ``seq``, with that tree's signed note: with every
    entry up to ``seq`` linked by prev_hash, a receiver proves it missed and altered nothing."""
    data = {
        "checkpoint": note,
        "seq": seq,
        "hash": entry_hash,
        "inclusion": [base64.b64encode(h).decode() for h in inclusion],
    }
    return Event(
        id=f"{account_id}:checkpoint:{seq}",
        type=CHECKPOINT,
        seq=None,
        subject_suffix="checkpoint",
        body=_body(CHECKPOINT, occurred_at, data),
    )


def skipped_event(account_id: str, run: PurgedRun, purged_at: str) -> Event:
    """The stream stepped over seqs ``run.first``..``run.last``: a purge removed them before the stream got
    there. ``purge_seq`` is the run's ``activity_log.purge`` entry (which names the range, and which the
    stream carries later, proven by a checkpoint); ``prev_hash`` and ``hash`` are the chain's links on
    either side of the gap, from the purge's tombstones."""
    data = {
        "skipped": [run.first, run.last],
        "reason": PURGED,
        "purge_seq": run.purge_seq,
        "prev_hash": run.prev_hash,
        "hash": run.hash,
    }
    return Event(
        id=skipped_id(account_id, run.first, run.last),
        type=SKIPPED,
        seq=None,
        subject_suffix="skipped",
        body=_body(SKIPPED, purged_at, data),
    )


def skipped_id(account_id: str, first: int, last: int) -> str:
    return f"{account_id}:skipped:{first}-{last}"


def skipped_range(event_id: str) -> list[int] | None:
    """``[from, to]`` of a skipped-range event's id, else None."""
    if ":skipped:" not in event_id:
        return None
    first, _, last = event_id.rsplit(":", 1)[1].partition("-")
    return [int(first), int(last)]


def test_event(account_id: str, stream_id: str, event_id: str, now: str) -> Event:
    data = {"stream_id": stream_id, "message": "A test event from activitylog: this stream reaches you."}
    return Event(
        id=f"{account_id}:test:{event_id}",
        type=TEST,
        seq=None,
        subject_suffix="test",
        body=_body(TEST, now, data),
    )
