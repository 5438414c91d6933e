#!/usr/bin/env python3
"""Prove, on the receiving side, that what a stream delivered is the account's log: nothing missing, nothing
altered, up to the last checkpoint it carried.

    python3 verify_stream.py received.jsonl --verifier-key VKEY

The input is what a receiver stored, one event per line, as it arrived: webhook bodies or NATS JetStream
payloads (``{"type", "timestamp", "data"}``), in any order, retries and replays included. Events with the
same id are one event — and must then be the same bytes' worth of entry. Entries of ``format: "json"``
streams are checked as they are; of ``format: "ocsf"`` streams, through the entry the event carries in
``raw_data`` (its ``metadata.uid`` and ``unmapped`` hashes must agree with it).

What holds when it exits 0 (API.md part 2, "Completeness"): every entry from the first one received to the
last checkpoint N is present, each hash recomputes from its content, each ``prev_hash`` is the hash of the
entry before it, and entry N's hash is in the tree of size N whose signed note verifies with the verifier
key — which comes from outside the file (obtain it once, out of band: ``GET
/api/v1/accounts/{id}/verifier-key``). Since each hash covers the one before it, entries first..N are then
exactly the account's. Entries after N are checked the same way but not yet covered by a checkpoint; the
tool says how many. Each checkpoint in the file is checked, not only the last.

A stream behind a purge steps over the purged ranges: for each it sends an ``activity.skipped`` event
(``{"skipped": [from, to], "reason": "purged", "purge_seq", "prev_hash", "hash"}``) after a checkpoint of
what came before. A gap between received entries is accepted exactly when such events cover it, link to
the entries on both sides (``prev_hash`` is the hash of entry from-1, ``hash`` the prev_hash of entry
to+1), and the ``activity_log.purge`` entry each names was received, is covered by the last checkpoint and
lists the range; the entries before the gap must be proven by a checkpoint of their own. Any other gap is
reported as missing entries.

Needs the standard library, ``cryptography`` for the signatures, and ``verify_export.py`` beside it (its
hash, Merkle and signed-note checks). Holds the distinct entries in memory (about 1 KiB each). Exit 0 when
everything holds; 1 naming the seq when something does not; 2 when it cannot check (usage, an unreadable
file or key, no checkpoint to prove against, an action this verifier does not know): one line each.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

try:
    from activitylog.log import verify_export as vx
except ImportError:  # a script beside verify_export.py, with no activitylog package installed
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import verify_export as vx  # type: ignore[no-redef]

OK, TAMPERED, CANNOT_CHECK = 0, 1, 2
ENTRY, CHECKPOINT, TEST = "activity.entry", "activity.checkpoint", "activity.test"
SKIPPED = "activity.skipped"
SKIP_FIELDS = {"skipped", "reason", "purge_seq", "prev_hash", "hash"}
PURGE_ACTION = "activity_log.purge"


class Broken(Exception):
    """What the stream holds is not the log (exit 1)."""


@dataclass
class Received:
    account_id: str | None = None
    entries: dict[int, dict[str, Any]] = field(default_factory=dict)  # seq -> the entry (API shape)
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)  # size -> the event's data
    skips: dict[int, dict[str, Any]] = field(default_factory=dict)  # first skipped seq -> the event's data
    events: int = 0
    duplicates: int = 0
    tests: int = 0

    def same_account(self, account_id: Any, where: str) -> None:
        if not isinstance(account_id, str):
            raise Broken(f"{where}: no account id")
        if self.account_id is None:
            self.account_id = account_id
        elif account_id != self.account_id:
            raise Broken(f"{where}: events of two accounts ({self.account_id}, {account_id}) in one file")


def _entry_of(data: Any, where: str) -> dict[str, Any]:
    """The entry an event carries: ``data`` itself (json) or its OCSF event's ``raw_data``."""
    if not isinstance(data, dict):
        raise Broken(f"{where}: the event's data is not an object")
    if "class_uid" not in data:
        return data
    raw = data.get("raw_data")
    if not isinstance(raw, str):
        raise Broken(f"{where}: an OCSF event without raw_data: its entry cannot be recomputed")
    try:
        entry = json.loads(raw, parse_constant=vx._no_constant)
    except ValueError:
        raise Broken(f"{where}: the OCSF event's raw_data is not JSON") from None
    if not isinstance(entry, dict):
        raise Broken(f"{where}: the OCSF event's raw_data is not an entry")
    uid = (data.get("metadata") or {}).get("uid")
    unmapped = data.get("unmapped") or {}
    if uid != f"{entry.get('account_id')}:{entry.get('seq')}":
        raise Broken(f"{where}: metadata.uid {uid!r} is not the raw entry's <account_id>:<seq>")
    if (unmapped.get("hash"), unmapped.get("prev_hash")) != (entry.get("hash"), entry.get("prev_hash")):
        raise Broken(f"{where}: the OCSF event's unmapped hashes differ from its raw entry's")
    return entry


def read_events(lines: Iterable[str]) -> Received:
    got = Received()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            event = json.loads(line, object_pairs_hook=vx._unique_keys, parse_constant=vx._no_constant)
        except vx._DuplicateKey as exc:
            raise Broken(f"{where}: a duplicate key ({exc})") from None
        except ValueError:
            raise Broken(f"{where}: not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise Broken(f"{where}: not a stream event ({{type, timestamp, data}})")
        got.events += 1
        kind, data = event["type"], event.get("data")
        if kind == TEST:
            got.tests += 1
        elif kind == ENTRY:
            entry = _entry_of(data, where)
            seq = entry.get("seq")
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
                raise Broken(f"{where}: the entry has no positive seq")
            got.same_account(entry.get("account_id"), where)
            if seq in got.entries:
                if got.entries[seq] != entry:
                    raise Broken(f"seq {seq}: delivered twice with different content ({where})")
                got.duplicates += 1
            got.entries[seq] = entry
        elif kind == CHECKPOINT:
            if not isinstance(data, dict) or set(data) != {"checkpoint", "seq", "hash", "inclusion"}:
                raise Broken(f"{where}: a checkpoint event is {{checkpoint, seq, hash, inclusion}}")
            size = data["seq"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise Broken(f"{where}: the checkpoint has no positive seq")
            if size in got.checkpoints:
                if got.checkpoints[size] != data:
                    raise Broken(f"checkpoint {size}: delivered twice with different content ({where})")
                got.duplicates += 1
            got.checkpoints[size] = data
        elif kind == SKIPPED:
            first, skip = _skip_of(data, where)
            if first in got.skips:
                if got.skips[first] != skip:
                    raise Broken(
                        f"skipped range from {first}: delivered twice with different content ({where})"
                    )
                got.duplicates += 1
            got.skips[first] = skip
        else:
            raise Broken(f"{where}: an event of unknown type {kind!r}")
    return got


def _skip_of(data: Any, where: str) -> tuple[int, dict[str, Any]]:
    """The first seq and the data of a well-formed ``activity.skipped`` event."""
    if not isinstance(data, dict) or set(data) != SKIP_FIELDS:
        raise Broken(f"{where}: a skipped event is {{skipped, reason, purge_seq, prev_hash, hash}}")
    span, purge_seq = data["skipped"], data["purge_seq"]
    if not (
        isinstance(span, list)
        and len(span) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) for s in span)
        and 1 <= span[0] <= span[1]
        and isinstance(purge_seq, int)
        and purge_seq > span[1]
        and data["reason"] == "purged"
        and all(isinstance(data[k], str) for k in ("prev_hash", "hash"))
    ):
        raise Broken(f"{where}: a skipped event names no purged range [from, to] before its purge entry")
    return int(span[0]), data


def _purged_by(entry: dict[str, Any] | None) -> list[tuple[int, int]]:
    """The ranges an ``activity_log.purge`` entry says its run removed."""
    if entry is None or entry.get("action") != PURGE_ACTION:
        return []
    ranges = (entry.get("changes") or {}).get("ranges")
    if isinstance(ranges, dict):  # recorded as a change {from, to}
        ranges = ranges.get("to")
    if not isinstance(ranges, list):
        return []
    return [(r[0], r[1]) for r in ranges if isinstance(r, list) and len(r) == 2]


def _explain_gap(got: Received, lo: int, hi: int, n: int) -> list[tuple[int, int, int]]:
    """The skipped events that account for the gap ``lo..hi`` between received entries, as (from, to,
    purge entry seq); raises Broken when the gap is not exactly purged ranges the log itself, up to
    checkpoint ``n``, says were purged, linked to the entries on either side."""
    at, prev_hash, runs = lo, got.entries[lo - 1]["hash"] if lo > 1 else vx.GENESIS, []
    while at <= hi:
        skip = got.skips.get(at)
        if skip is None:
            return []  # not a purge: the caller reports the seqs as missing
        first, last = skip["skipped"]
        if last > hi:
            raise Broken(f"a skipped range {first}-{last} covers received entry {hi + 1}")
        if skip["prev_hash"] != prev_hash:
            raise Broken(f"the skipped range {first}-{last} does not link to the entry before it")
        purge = skip["purge_seq"]
        if purge > n:
            raise Broken(
                f"the skipped range {first}-{last} names purge entry {purge}, beyond the last checkpoint {n}"
            )
        if not any(a <= first and last <= b for a, b in _purged_by(got.entries.get(purge))):
            raise Broken(
                f"seq {first}-{last} were skipped as purged, but entry {purge} is not a purge of them"
            )
        runs.append((first, last, purge))
        prev_hash, at = skip["hash"], last + 1
    after = got.entries.get(hi + 1)
    if after is not None and after["prev_hash"] != prev_hash:
        raise Broken(f"entry {hi + 1} does not link to the skipped range before it")
    return runs


def _check_checkpoint(got: Received, size: int, key: vx.VerifierKey) -> None:
    data = got.checkpoints[size]
    try:
        signed = vx.open_checkpoint(data["checkpoint"], key) if isinstance(data["checkpoint"], str) else None
    except vx.BadCheckpoint as exc:
        raise Broken(f"checkpoint {size}: {exc}") from None
    if signed is None:
        raise Broken(f"checkpoint {size}: the signed note is not text")
    if signed.size != size:
        raise Broken(f"checkpoint {size}: its signed note is of tree {signed.size}")
    if got.account_id is not None and not signed.origin.endswith("/" + got.account_id):
        raise Broken(f"checkpoint {size}: signed for {signed.origin}, the entries are of {got.account_id}")
    entry = got.entries.get(size)
    if entry is None:
        raise Broken(f"checkpoint {size}: entry {size} is missing")
    if data["hash"] != entry["hash"]:
        raise Broken(f"checkpoint {size}: it names another hash than entry {size}'s")
    path = vx._b64_hashes(data["inclusion"])
    if path is None:
        raise Broken(f"checkpoint {size}: the inclusion proof is not a list of base64 SHA-256 hashes")
    if vx.inclusion_root(size - 1, size, vx.leaf_hash(entry["hash"]), path) != signed.root:
        raise Broken(f"checkpoint {size}: entry {size} is not in the signed tree (its audit path fails)")


def verify(got: Received, key: vx.VerifierKey) -> str:
    """The verdict line for what was received; raises Broken or vx.CannotCheck."""
    if not got.entries:
        raise vx.CannotCheck("the file holds no entry events")
    seqs = sorted(got.entries)
    first, last = seqs[0], seqs[-1]
    report = vx.verify_rows(vx.flatten(got.entries[seq]) for seq in seqs)
    if not report.ok:
        raise Broken(vx.describe(report).removeprefix("TAMPERED: "))
    covered = [size for size in got.checkpoints if size >= first]
    if not covered:
        raise vx.CannotCheck(
            f"the entries (seq {first}..{last}) link and recompute, but no checkpoint at or after seq "
            f"{first} was received to prove them complete (an unfiltered stream carries one at least every "
            "1,000 entries or 60 s)"
        )
    n = max(covered)
    missing, purged = [], []
    for lo, hi in report.gaps:
        if lo > n:
            continue
        runs = _explain_gap(got, lo, hi, n)
        if not runs:
            missing.append((lo, hi))
            continue
        purged.extend(runs)
        if lo - 1 not in got.checkpoints:  # what came before the gap is proven by its own checkpoint
            raise vx.CannotCheck(
                f"seq {lo}-{hi} were purged (entry {runs[0][2]} says so), but no checkpoint of tree {lo - 1} "
                "proves the entries before the gap (a stream sends one before it skips)"
            )
    if n > last:
        missing.append((last + 1, n))
    if missing:
        shown = ", ".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in missing[:10])
        raise Broken(f"entries missing before checkpoint {n}: seq {shown}")
    for size in sorted(covered):
        _check_checkpoint(got, size, key)
    gaps = ""
    if purged:
        shown = ", ".join(f"{a}-{b} (purge entry {p})" for a, b, p in purged[:10])
        gaps = f"; purged under the retention policy, skipped as the log's purge entries say: seq {shown}"
    after = sum(1 for seq in seqs if seq > n)
    tail = f"; {after} entries after it not yet covered by a checkpoint" if after else ""
    early = len(got.checkpoints) - len(covered)
    earlier = f"; {early} checkpoints before the first entry ignored" if early else ""
    return (
        f"OK: seq {first}..{n} of {got.account_id} complete{' but for purged ranges' if purged else ''} and "
        f"unaltered, proven by the checkpoint of tree "
        f"{n} ({len(covered)} checkpoints checked){gaps}{tail}{earlier}; {got.events} events read, "
        f"{got.duplicates} duplicates"
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(CANNOT_CHECK, f"CANNOT CHECK: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description="Prove a received stream holds the account's log, complete and unaltered.")
    parser.add_argument(
        "file", help="JSON Lines of received event bodies (webhook bodies or NATS payloads); - reads stdin"
    )
    parser.add_argument(
        "--verifier-key",
        required=True,
        help="the account's note verifier key <name>+<hex>+<base64>, or a file holding it; obtain it out of "
        "band (GET /api/v1/accounts/ACC/verifier-key, once) and pin it",
    )
    args = parser.parse_args(argv)
    try:
        key = vx.read_verifier_key(args.verifier_key)
        if args.file == "-":
            got = read_events(sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as f:
                got = read_events(f)
        print(verify(got, key))
        return OK
    except Broken as exc:
        print(f"TAMPERED: {exc}")
        return TAMPERED
    except vx.CannotCheck as exc:
        print(f"CANNOT CHECK: {exc}")
        return CANNOT_CHECK
    except (OSError, UnicodeDecodeError) as exc:
        print(f"CANNOT CHECK: cannot read {args.file}: {exc}")
        return CANNOT_CHECK


if __name__ == "__main__":
    sys.exit(main())
