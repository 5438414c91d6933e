#!/usr/bin/env python3
"""Check an activity-log export on its own, with the Python standard library alone.

    python3 verify_export.py activity-acc_….csv        # an export (CSV or JSON Lines)
    python3 verify_export.py export.csv --manifest export.csv.manifest.json --public-key signing.pem
    python3 verify_export.py --url URL --key KEY        # or every entry of a key's account, from the API

An auditor need not trust the service: this single file is all it takes (it is also the code behind
``activitylog verify-export``). Each entry's ``hash = sha256_hex(prev_hash + "\\n" + canonical)``, where
``canonical`` is the compact, key-sorted JSON of the chained fields (API.md, "Integrity"). Every row's hash
must match its content; consecutive seqs must link (prev_hash = the previous row's hash); seq 1 must link to
64 zeros. A filtered slice skips seqs: a gap is reported as a gap, not as tampering.

With the export's signed manifest (and the service's published public key), it also proves that no row
was removed from or added to the slice, and checks the signed checkpoint of the account's head: this part
needs the ``cryptography`` package as well. Exit 0 when everything holds, 1 when something does not
(naming the seq), 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
CHAINED = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "changes", "request_id",
)  # fmt: skip
CSV_HEADER = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "summary", "changes",
    "request_id", "prev_hash", "hash",
)  # fmt: skip


class UnreadableExport(ValueError):
    """The input is not an export this tool understands."""


def entry_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    obj = {name: fields[name] for name in CHAINED}
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + canonical).encode("utf-8")).hexdigest()


def unescape(cell: str) -> str | None:
    """Undo the CSV's formula safety (one leading ``'``); an empty cell is null."""
    if cell == "":
        return None
    return cell[1:] if cell.startswith("'") else cell


def rows_from_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(header) != CSV_HEADER:
        raise UnreadableExport("not an activity-log CSV: the header row differs from the contract's")
    for number, cells in enumerate(reader, start=2):
        if len(cells) != len(CSV_HEADER):
            raise UnreadableExport(f"line {number}: {len(cells)} cells, expected {len(CSV_HEADER)}")
        row: dict[str, Any] = {name: unescape(cell) for name, cell in zip(CSV_HEADER, cells, strict=True)}
        try:
            row["seq"] = int(row["seq"] or "")
            row["changes"] = json.loads(row["changes"] or "")
        except ValueError:
            raise UnreadableExport(f"line {number}: seq or changes cannot be read") from None
        yield row


def flatten(entry: dict[str, Any]) -> dict[str, Any]:
    """The API's (and JSON Lines export's) nested entry as the flat row the chain covers."""
    return {
        **entry,
        "actor_type": entry["actor"]["type"],
        "actor_id": entry["actor"]["id"],
        "actor_name": entry["actor"]["name"],
        "resource_type": entry["resource"]["type"],
        "resource_id": entry["resource"]["id"],
        "resource_name": entry["resource"]["name"],
    }


def rows_from_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                yield flatten(json.loads(line))
            except (ValueError, KeyError, TypeError):
                raise UnreadableExport(f"line {number}: not an activity entry") from None


@dataclass
class Report:
    rows: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing, last missing)
    problem: str | None = None
    bad_seq: int | None = None
    digest: Any = field(default_factory=hashlib.sha256)  # over "seq:hash\n" of every row, as manifests sign

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_rows(rows: Iterable[dict[str, Any]]) -> Report:
    """Oldest first, as exported. Stops at the first row that does not hold."""
    report = Report()
    previous: dict[str, Any] | None = None
    for row in rows:
        seq = row["seq"]
        if previous is not None:
            if row["account_id"] != previous["account_id"]:
                report.problem, report.bad_seq = "rows of two accounts in one export", seq
                return report
            if seq <= previous["seq"]:
                report.problem, report.bad_seq = (
                    f"out of order or repeated (after seq {previous['seq']})",
                    seq,
                )
                return report
            if seq == previous["seq"] + 1 and row["prev_hash"] != previous["hash"]:
                report.problem, report.bad_seq = f"prev_hash does not link to seq {previous['seq']}", seq
                return report
            if seq > previous["seq"] + 1:
                report.gaps.append((previous["seq"] + 1, seq - 1))
        elif seq == 1 and row["prev_hash"] != GENESIS:
            report.problem, report.bad_seq = "seq 1 does not link to the genesis hash", seq
            return report
        if entry_hash(row["prev_hash"], row) != row["hash"]:
            report.problem, report.bad_seq = "hash does not match the row's content", seq
            return report
        report.rows += 1
        report.digest.update(f"{seq}:{row['hash']}\n".encode())
        report.first_seq = report.first_seq or seq
        report.last_seq, report.head_hash = seq, row["hash"]
        previous = row
    return report


# ---- Merkle proofs and signed checkpoints (API.md part 2, "Proofs") ----
# RFC 6962 / RFC 9162 trees over the entries' hashes and C2SP signed notes, checked here with the standard
# library (signatures need ``cryptography``), so an auditor does not have to trust the service's own code.
NOTE_DASH = "\u2014 "  # a signature line starts with an em dash and a space


class CannotCheck(Exception):
    """The check cannot run (missing package, unusable key): neither intact nor tampered."""


class BadCheckpoint(ValueError):
    """A checkpoint that is malformed or not signed by the expected key."""


def leaf_hash(entry_hash_hex: str) -> bytes:
    """Leaf data is the 32 raw bytes of the entry's hash."""
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _shift_while(fn: int, sn: int, bit_set: bool) -> tuple[int, int]:
    """Right-shift both until fn's low bit is no longer ``bit_set`` (or fn is 0)."""
    while fn and bool(fn & 1) == bit_set:
        fn, sn = fn >> 1, sn >> 1
    return fn, sn


def inclusion_root(leaf_index: int, tree_size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root that ``path`` leads to from ``leaf`` (RFC 9162 2.1.3.2), or None if it is malformed."""
    if not 0 <= leaf_index < tree_size:
        return None
    fn, sn, r = leaf_index, tree_size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                fn, sn = _shift_while(fn, sn, bit_set=False)
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def consistency_holds(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    """Whether the tree of ``new_size`` extends the one of ``old_size`` (RFC 9162 2.1.4.2)."""
    if not 1 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        proof = [old_root, *proof]
    fn, sn = _shift_while(old_size - 1, new_size - 1, bit_set=True)
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                fn, sn = _shift_while(fn, sn, bit_set=False)
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def note_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note key id: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes


def parse_verifier_key(text: str) -> VerifierKey:
    """``<name>+<8 hex key id>+<base64(0x01 || Ed25519 public key)>``, as Go's sumdb/note writes it."""
    name, _, rest = text.strip().partition("+")
    hex_id, _, b64 = rest.partition("+")
    try:
        raw = base64.b64decode(b64, validate=True)
        key_id = bytes.fromhex(hex_id)
    except ValueError:
        raise CannotCheck("the verifier key is not <name>+<hex id>+<base64 key>") from None
    if not name or len(key_id) != 4 or len(raw) != 33 or raw[0] != 1:
        raise CannotCheck("the verifier key is not an Ed25519 note verifier key")
    if note_key_id(name, raw[1:]) != key_id:
        raise CannotCheck("the verifier key's id does not match its name and key")
    return VerifierKey(name, key_id, raw[1:])


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    text: str


def _ed25519_valid(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415  (only signatures need it)
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415
    except ImportError:
        raise CannotCheck(
            "checking a signature needs the cryptography package: pip install cryptography"
        ) from None
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def open_checkpoint(text: str, key: VerifierKey) -> Checkpoint:
    """The checkpoint a C2SP signed note states, once a signature by ``key`` verifies; else BadCheckpoint."""
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise BadCheckpoint("not a signed note (no blank line before the signatures)")
    body, signatures = text[: split + 1], text[split + 2 :]
    lines = body.split("\n")
    if len(lines) < 4 or not lines[1].isdigit() or (lines[1] != "0" and lines[1].startswith("0")):
        raise BadCheckpoint("not a checkpoint: origin, tree size and root hash lines expected")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        raise BadCheckpoint("the root hash line is not base64") from None
    if len(root) != 32:
        raise BadCheckpoint("the root hash is not 32 bytes")
    if lines[0] != key.name:
        raise BadCheckpoint(f"the checkpoint is for {lines[0]!r}, the verifier key for {key.name!r}")
    for line in signatures.split("\n")[:-1]:
        if not line.startswith(NOTE_DASH):
            raise BadCheckpoint("a signature line is malformed")
        name, _, b64 = line[len(NOTE_DASH) :].rpartition(" ")
        try:
            sig = base64.b64decode(b64, validate=True)
        except ValueError:
            raise BadCheckpoint("a signature is not base64") from None
        if name == key.name and sig[:4] == key.key_id and len(sig) == 68:
            if _ed25519_valid(key.public_key, sig[4:], body.encode("utf-8")):
                return Checkpoint(lines[0], int(lines[1]), root, text)
            raise BadCheckpoint("the signature does not verify with the verifier key")
    raise BadCheckpoint("no signature by the verifier key")


def rows_from_file(path: str) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
        f.seek(0)
        if first.lstrip().startswith("{"):
            yield from rows_from_jsonl(f)
        else:
            yield from rows_from_csv(f)


def rows_from_api(url: str, key: str, page_size: int = 1000) -> list[dict[str, Any]]:
    """Every entry of the key's account (the API pages newest first), returned oldest first."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": str(page_size), **({"cursor": cursor} if cursor else {})}
        request = urllib.request.Request(  # noqa: S310 (the auditor chooses the URL)
            f"{url.rstrip('/')}/api/v1/activity?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {key}", "User-Agent": "verify_export.py"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310
            page = json.load(response)
        entries.extend(flatten(e) for e in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return sorted(entries, key=lambda e: e["seq"])


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_public_key(path: str) -> Any:
    """A PEM file, or the raw key in base64 (as /api/v1/activity/checkpoints/public-key lists it)."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415  (only manifests need it)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: PLC0415

    with open(path, "rb") as f:
        data = f.read().strip()
    if data.startswith(b"-----BEGIN"):
        return serialization.load_pem_public_key(data)
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(data))


def _signed_by(key: Any, body: dict[str, Any], signature: str) -> bool:
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

    try:
        key.verify(base64.b64decode(signature), _canonical(body))
    except (InvalidSignature, ValueError):
        return False
    return True


CHECKPOINT_SIGNED = ("account_id", "seq", "hash", "time", "previous_signature", "key_id")


def check_manifest(report: Report, manifest: dict[str, Any], key: Any) -> str | None:
    """Why the rows do not match the signed manifest, or None when they do."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    if not _signed_by(key, body, manifest.get("signature", "")):
        return "the manifest's signature does not verify with this public key"
    checkpoint = manifest.get("checkpoint")
    if checkpoint is not None:
        signed = {name: checkpoint[name] for name in CHECKPOINT_SIGNED}
        if not _signed_by(key, signed, checkpoint["signature"]):
            return "the checkpoint's signature does not verify with this public key"
    if report.rows != manifest["rows"]:
        listed = manifest["rows"]
        return f"the manifest lists {listed} rows, the file has {report.rows}: rows were removed or added"
    if report.digest.hexdigest() != manifest["slice_digest"]:
        return "the rows' seqs and hashes differ from the ones the manifest signed: rows were replaced"
    return None


def describe(report: Report) -> str:
    if not report.ok:
        return f"TAMPERED: seq {report.bad_seq}: {report.problem} ({report.rows} rows before it hold)"
    if not report.rows:
        return "OK: the export holds no rows"
    span = f"seq {report.first_seq}..{report.last_seq}"
    gaps = ""
    if report.gaps:
        shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in report.gaps[:10])
        more = f" and {len(report.gaps) - 10} more" if len(report.gaps) > 10 else ""
        gaps = f"; {len(report.gaps)} gaps (not in the slice: {shown}{more})"
    return f"OK: {report.rows} rows verified, {span}{gaps}; last hash {report.head_hash}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Verify an activity-log export with the standard library alone."
    )
    parser.add_argument("file", nargs="?", help="an export: CSV or JSON Lines")
    parser.add_argument("--url", help="instead of a file: the service's base URL")
    parser.add_argument("--key", help="with --url: an API key that may read the log")
    parser.add_argument("--manifest", help="the export's signed manifest (.manifest.json)")
    parser.add_argument("--public-key", help="with --manifest: the service's public key (PEM or base64)")
    args = parser.parse_args(argv)
    if bool(args.file) == bool(args.url) or (args.url and not args.key):
        parser.error("give an export FILE, or --url with --key")
    if args.manifest and not args.public_key:
        parser.error("--manifest needs --public-key (GET /api/v1/activity/checkpoints/public-key; pin it)")
    try:
        rows = rows_from_file(args.file) if args.file else iter(rows_from_api(args.url, args.key))
        report = verify_rows(rows)
        manifest = key = None
        if args.manifest:
            with open(args.manifest, encoding="utf-8") as f:
                manifest = json.load(f)
            key = load_public_key(args.public_key)
    except (OSError, UnreadableExport, UnicodeDecodeError, csv.Error, ValueError) as exc:
        print(f"UNREADABLE: {exc}")
        return 2
    print(describe(report))
    if not report.ok:
        return 1
    if manifest is not None:
        problem = check_manifest(report, manifest, key)
        if problem:
            print(f"TAMPERED: {problem}")
            return 1
        head = manifest.get("checkpoint") or {}
        print(
            f"MANIFEST OK: all {manifest['rows']} rows of the slice as of seq {manifest['as_of_seq']} are "
            "present and unaltered; signed head: "
            f"seq {head.get('seq')} hash {head.get('hash')} at {head.get('time')}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
