#!/usr/bin/env python3
"""Check an activity-log export on its own, with the Python standard library alone.

    python3 verify_export.py export.csv                                   # the rows alone
    python3 verify_export.py export.csv --proof export.csv.proof.jsonl --verifier-key VKEY
    python3 verify_export.py export.csv --manifest export.csv.manifest.json --verifier-key VKEY
    python3 verify_export.py --url URL --key KEY        # or every entry of a key's account, from the API

An auditor need not trust the service: this single file is all it takes (it is also the code behind
``activitylog verify-export``, and the service's own summaries and Merkle checks come from it).

The rows alone: each entry's ``hash = sha256_hex(prev_hash + "\\n" + canonical)`` (API.md, "Integrity") must
match its content, consecutive seqs must link, seq 1 must link to 64 zeros; a filtered slice skips seqs (a
gap, not tampering). What a reader sees beyond the hash is checked too: the ``summary`` must be the one
derived from the action and resource name, the ``changes`` cell exactly the canonical JSON text, every cell's
formula guard exactly the contract's rule; JSON Lines entries must have the contract's fields and types and
no duplicate keys.

Rows in canonical form v2 (a non-empty ``salts`` cell or field: entries holding a subscriber's personal data)
are hashed with each personal value replaced by its commitment ``SHA-256(salt || value)``, or by the
commitment an erasure kept (:func:`committed`, the one definition of the form, which the service uses too).

With ``--proof`` (the export's proof file) and ``--verifier-key`` (obtained out of band, never from a file
it checks), every row is proven to be in the account's Merkle tree whose root the service signed (RFC 6962
audit paths, a C2SP signed-note checkpoint). With ``--manifest``, the signed manifest proves that no row of
the slice was removed or added. Signatures need the ``cryptography`` package; everything else is stdlib.

Exit 0 when everything holds, 1 when something does not (naming the seq), 2 when it cannot check (bad usage,
an unreadable file or key, a missing package): one line each, never a traceback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import csv
import hashlib
import json
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

GENESIS = "0" * 64
CHAINED = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "changes", "request_id",
)  # fmt: skip
CSV_HEADER = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "summary", "changes",
    "request_id", "prev_hash", "hash", "salts",
)  # fmt: skip
# Exports written before canonical form v2 end at ``hash`` (every row v1).
CSV_HEADER_V1 = CSV_HEADER[:-1]
# The contract's formula safety: a cell whose text begins with one of these gets one extra leading ``'``.
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "'")


class UnreadableExport(ValueError):
    """The input is not an export this tool understands."""


# ---- summaries: the one place the rule lives (the service writes them with this code) ----
_PAST = {
    "create": "Created", "update": "Updated", "delete": "Deleted", "schedule": "Scheduled",
    "unschedule": "Unscheduled", "send": "Sent", "pause": "Paused", "resume": "Resumed",
    "suppress": "Suppressed", "unsuppress": "Unsuppressed", "enable": "Enabled", "disable": "Disabled",
    "revoke": "Revoked", "rotate": "Rotated", "verify": "Verified", "import": "Imported",
    "export": "Exported", "replay": "Replayed",
    "archive": "Archived", "purge": "Purged", "release": "Released", "erase": "Erased", "rename": "Renamed",
    "raise": "Raised", "acknowledge": "Acknowledged",
}  # fmt: skip
_NOUN = {
    "account": "account", "user": "user", "api_key": "API key", "list": "list", "contact": "contact",
    "segment": "segment", "broadcast": "broadcast", "address": "address", "sending_domain": "sending domain",
    "reputation_rule": "reputation rule", "activity_log": "activity log", "stream": "stream",
    "legal_hold": "legal hold", "saved_view": "saved view", "alert": "alert",
}  # fmt: skip


def summarize(action: str, resource_name: str | None) -> str:
    """A one-line, human summary such as ``Sent broadcast "Spring picks"``. KeyError for an action outside
    the vocabulary."""
    rtype, _, verb = action.partition(".")
    noun = _NOUN[rtype]
    name = f' "{resource_name}"' if resource_name else ""
    if verb == "login":
        return f"Signed in{name and ' as' + name}"
    if verb == "logout":
        return f"Signed out{name and ' as' + name}"
    if action == "api_key.login_failed":
        return f"Refused revoked API key{name}"
    if verb == "login_failed":
        return f"Failed sign-in{name and ' as' + name}"
    if verb == "denied":  # a request refused for its role or scope; ``changes`` says what it attempted
        return f"Refused access to {noun}{name}"
    return f"{_PAST[verb]} {noun}{name}"


# ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``, its encoder built once
# instead of on every call (every entry is encoded several times on its way into the chain).
canonical_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def entry_hash(prev_hash: str, fields: dict[str, Any], salts: dict[str, Any] | None = None) -> str:
    """v1 without ``salts``; v2 (personal data committed, see :func:`committed`) with them. ValueError
    when the salts do not fit the entry."""
    obj = {name: fields[name] for name in CHAINED}
    if salts is not None:
        obj = committed(obj, salts)
    return hashlib.sha256((prev_hash + "\n" + canonical_text(obj)).encode("utf-8")).hexdigest()


# ---- canonical form v2: a subscriber's personal values enter the hash only as salted commitments ----
CHAIN_VERSION = 2
SALT_HEX = 32  # 16 random bytes per value


def commitment(salt_hex: str, value: Any) -> str:
    """``SHA-256(salt || value)``, hex; the value as its canonical JSON text (a string with its quotes)."""
    return hashlib.sha256(bytes.fromhex(salt_hex) + canonical_text(value).encode("utf-8")).hexdigest()


_HEX_DIGITS = frozenset("0123456789abcdef")


def _is_hex(text: Any, length: int) -> bool:
    return isinstance(text, str) and len(text) == length and _HEX_DIGITS.issuperset(text)


def pointer_parts(path: str) -> list[str]:
    """An RFC 6901 JSON Pointer (``/changes/email/to``, ``/changes/address_ids/to/0``) into its tokens."""
    if not path.startswith("/"):
        raise ValueError(f"salts: {path!r} is not a JSON Pointer")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _step(node: Any, token: str) -> tuple[Any, Any]:
    """The container and key a pointer token names inside ``node``."""
    if isinstance(node, dict) and token in node:
        return node, token
    if isinstance(node, list) and token.isdigit() and str(int(token)) == token and int(token) < len(node):
        return node, int(token)
    raise ValueError(f"salts: {token!r} names nothing in the entry")


def locate(obj: dict[str, Any], path: str) -> tuple[Any, Any]:
    """The container and key of the value at ``path`` (a chained field, or a value inside ``changes``)."""
    parts = pointer_parts(path)
    if parts[0] not in obj or parts[0] in ("account_id", "seq"):
        raise ValueError(f"salts: {path!r} is not a field that can hold personal data")
    node, key = obj, parts[0]
    for token in parts[1:]:
        node, key = _step(node[key], token)
    return node, key


def committed(obj: dict[str, Any], salts: dict[str, Any]) -> dict[str, Any]:
    """The v2 canonical object: every value a salt names replaced by its commitment, plus
    ``"chain_version": 2`` and ``"committed"`` (the sorted paths), so neither can be changed unseen.

    ``salts`` maps each path to the value's salt (hex), or, once the value was erased, to
    ``{"commitment": hex}``: value and salt are gone, the commitment is what the hash still covers."""
    if not isinstance(salts, dict) or not salts:
        raise ValueError("salts: a v2 entry names at least one committed value")
    out = json.loads(canonical_text(obj))  # a deep copy: the caller's fields stay as they are
    for path, salt in salts.items():
        node, key = locate(out, path)
        if _is_hex(salt, SALT_HEX):
            node[key] = commitment(salt, node[key])
        elif isinstance(salt, dict) and set(salt) == {"commitment"} and _is_hex(salt["commitment"], 64):
            node[key] = salt["commitment"]
        else:
            raise ValueError(f"salts: {path!r} is neither a salt nor an erased value's commitment")
    return {**out, "chain_version": CHAIN_VERSION, "committed": sorted(salts)}


def is_erased(salts: dict[str, Any] | None) -> bool:
    return salts is not None and any(isinstance(s, dict) for s in salts.values())


# ---- reading exports: what a reader sees must be exactly what the contract's rules produce ----
def unescape(cell: str) -> str | None:
    """Undo the CSV's formula safety (one leading ``'``); an empty cell is null."""
    if cell == "":
        return None
    return cell[1:] if cell.startswith("'") else cell


def guard_problem(cell: str) -> str | None:
    """Why a cell's formula guard is not exactly the contract's rule, or None."""
    if cell.startswith("'"):
        if not cell[1:].startswith(TRIGGERS):
            return "a formula guard (') on a cell whose value needs none"
    elif cell.startswith(TRIGGERS):
        return "a cell a spreadsheet would evaluate lacks its formula guard (')"
    return None


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for name, value in pairs:
        if name in obj:
            raise _DuplicateKey(name)
        obj[name] = value
    return obj


class _DuplicateKey(ValueError):
    pass


def _seq_of(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() and str(int(text)) == text else None


def rows_from_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The rows as the chain covers them; a row whose cells break the contract's rules carries its
    ``problem`` (and the seq it names, when readable)."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None or tuple(header) not in (CSV_HEADER, CSV_HEADER_V1):
        raise UnreadableExport("not an activity-log CSV: the header row differs from the contract's")
    columns = tuple(header)
    for cells in reader:
        row: dict[str, Any] = {"line": reader.line_num, "problem": None, "salts": None}
        if len(cells) != len(columns):
            row["problem"] = f"{len(cells)} cells, the header has {len(columns)}"
            yield row
            return
        row.update({name: unescape(cell) for name, cell in zip(columns, cells, strict=True)})
        row["seq"] = _seq_of(row["seq"])
        if row["salts"] is not None:
            row["salts"], problem = _salts_cell(row["salts"])
            row["problem"] = problem
        for name, cell in zip(columns, cells, strict=True):
            if problem := guard_problem(cell):
                row["problem"] = f"{name}: {problem}"
                break
        text = row["changes"] or ""
        try:
            row["changes"] = json.loads(text, parse_constant=_no_constant)
        except ValueError:
            row["problem"] = row["problem"] or "changes is not JSON"
        else:
            if canonical_text(row["changes"]) != text:
                row["problem"] = row["problem"] or (
                    "changes is not the canonical JSON text (key order, spacing, escapes or a duplicate key)"
                )
        if row["seq"] is None:
            row["problem"] = row["problem"] or "seq is not a number"
        yield row


def _salts_cell(text: str) -> tuple[Any, str | None]:
    """A v2 row's ``salts`` cell: the canonical JSON text of an object (a v1 row's cell is empty)."""
    try:
        salts = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValueError:
        return None, "salts is not JSON"
    if not isinstance(salts, dict) or canonical_text(salts) != text:
        return None, "salts is not the canonical JSON text of an object"
    return salts, None


ENTRY_FIELDS = {
    "account_id": str, "seq": int, "occurred_at": str, "actor": dict, "on_behalf_of": (str, None),
    "ip": (str, None), "user_agent": (str, None), "action": str, "resource": dict, "summary": str,
    "changes": object, "request_id": (str, None), "prev_hash": str, "hash": str,
}  # fmt: skip
PARTY_FIELDS = {"type": str, "id": str, "name": (str, None)}
# What a v2 entry (canonical form v2: personal data committed) has besides.
V2_FIELDS = {"chain_version": int, "salts": dict, "erased": bool}


def _type_problem(obj: dict[str, Any], fields: dict[str, Any], where: str) -> str | None:
    if set(obj) != set(fields):
        odd = sorted(set(obj) ^ set(fields))
        return f"{where}fields differ from the contract's ({', '.join(odd)})"
    for name, kind in fields.items():
        allowed = kind if isinstance(kind, tuple) else (kind,)
        value = obj[name]
        ok = any(
            value is None
            if t is None
            else (isinstance(value, t) and (t is bool or not isinstance(value, bool)))
            for t in allowed
        )
        if not ok:
            return f"{where}{name} has the wrong JSON type"
    return None


def flatten(entry: dict[str, Any]) -> dict[str, Any]:
    """The API's (and JSON Lines export's) nested entry as the flat row the chain covers; a row that breaks
    the contract's shape carries its ``problem``."""
    v2 = entry.get("chain_version", 1) != 1
    problem = _type_problem(entry, {**ENTRY_FIELDS, **V2_FIELDS} if v2 else ENTRY_FIELDS, "")
    if problem is None and v2 and entry["chain_version"] != CHAIN_VERSION:
        problem = f"chain_version {entry['chain_version']} is not one this verifier knows"
    if problem is None and v2 and entry["erased"] != is_erased(entry["salts"]):
        problem = "erased does not say whether the salts name erased values"
    for party in ("actor", "resource"):
        if problem is None:
            problem = _type_problem(entry[party], PARTY_FIELDS, f"{party}: ")
    if problem is not None:
        seq = entry.get("seq")
        return {
            "seq": seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
            "problem": problem,
        }
    return {
        **entry,
        "actor_type": entry["actor"]["type"],
        "actor_id": entry["actor"]["id"],
        "actor_name": entry["actor"]["name"],
        "resource_type": entry["resource"]["type"],
        "resource_id": entry["resource"]["id"],
        "resource_name": entry["resource"]["name"],
        "salts": entry["salts"] if v2 else None,
        "problem": None,
    }


def parse_entry(line: str) -> dict[str, Any]:
    """One JSON Lines entry: strict JSON (no duplicate keys, no NaN), the contract's fields and types."""
    try:
        entry = json.loads(line, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _DuplicateKey as exc:
        return {"seq": None, "problem": f"a duplicate key ({exc})"}
    except ValueError:
        return {"seq": None, "problem": "not JSON"}
    if not isinstance(entry, dict):
        return {"seq": None, "problem": "not an activity entry"}
    return flatten(entry)


def rows_from_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if line.strip():
            yield {**parse_entry(line), "line": number}
        elif line not in ("\n", "\r\n"):
            yield {"seq": None, "line": number, "problem": "a blank line with spaces"}


@dataclass
class Report:
    rows: int = 0
    account_id: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    head_hash: str | None = None
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first missing, last missing)
    problem: str | None = None
    bad_seq: int | None = None
    bad_line: int | None = None
    digest: Any = field(default_factory=hashlib.sha256)  # over "seq:hash\n" of every row, as manifests sign

    @property
    def ok(self) -> bool:
        return self.problem is None

    def fail(self, problem: str, seq: int | None, line: int | None = None) -> Report:
        self.problem, self.bad_seq, self.bad_line = problem, seq, line
        return self


def verify_rows(rows: Iterable[dict[str, Any]], proofs: ProofFile | None = None) -> Report:
    """Oldest first, as exported; with ``proofs``, each row against its line of the proof file, in step.
    Stops at the first row that does not hold."""
    report = Report()
    previous: dict[str, Any] | None = None
    for row in rows:
        seq = row["seq"]
        if row.get("problem"):
            return report.fail(row["problem"], seq, row.get("line"))
        if previous is not None:
            if row["account_id"] != previous["account_id"]:
                return report.fail("rows of two accounts in one export", seq)
            if seq <= previous["seq"]:
                return report.fail(f"out of order or repeated (after seq {previous['seq']})", seq)
            if seq == previous["seq"] + 1 and row["prev_hash"] != previous["hash"]:
                return report.fail(f"prev_hash does not link to seq {previous['seq']}", seq)
            if seq > previous["seq"] + 1:
                report.gaps.append((previous["seq"] + 1, seq - 1))
        elif seq < 1:
            return report.fail("seq is not positive", seq)
        elif seq == 1 and row["prev_hash"] != GENESIS:
            return report.fail("seq 1 does not link to the genesis hash", seq)
        try:
            digest = entry_hash(row["prev_hash"], row, row.get("salts"))
        except ValueError as exc:
            return report.fail(f"a v2 entry's {exc}", seq)
        if digest != row["hash"]:
            return report.fail("hash does not match the row's content", seq)
        try:
            summary = summarize(row["action"], row["resource_name"])
        except KeyError:
            raise CannotCheck(
                f"seq {seq}: action {row['action']!r} is not in this verifier's vocabulary "
                "(take tools/verify_export.py from the service's current release)"
            ) from None
        if row["summary"] != summary:
            return report.fail(f"summary is not the one the action and resource name give ({summary!r})", seq)
        if proofs is not None and (problem := proofs.check(row)):
            return report.fail(problem, seq)
        report.rows += 1
        report.digest.update(f"{seq}:{row['hash']}\n".encode())
        report.account_id = row["account_id"]
        report.first_seq = report.first_seq or seq
        report.last_seq, report.head_hash = seq, row["hash"]
        previous = row
    if proofs is not None and (problem := proofs.finish()):
        return report.fail(problem, None)
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


# ---- the proof file: each row's audit path in one signed tree, read in step with the export ----
def _b64_hashes(values: Any) -> list[bytes] | None:
    if not isinstance(values, list):
        return None
    out = []
    for value in values:
        try:
            raw = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        out.append(raw)
    return out


class ProofFile:
    """``{"checkpoint": "<signed note>", "tree_size": N}``, then ``{"seq": S, "hashes": [b64, …]}`` per row
    of the slice, oldest first. Opening it checks the checkpoint's signature against the verifier key (which
    the auditor brings); ``check`` takes the export's rows one by one, so memory stays constant."""

    def __init__(self, lines: Iterator[str], key: VerifierKey) -> None:
        self.lines, self.line = lines, 1
        try:
            head = json.loads(next(lines, ""))
            text, size = head["checkpoint"], head["tree_size"]
            if not isinstance(text, str) or not isinstance(size, int):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise UnreadableExport("the proof file does not start with a checkpoint line") from None
        try:
            self.checkpoint = open_checkpoint(text, key)
        except BadCheckpoint as exc:
            raise Tampered(f"the proof file's checkpoint: {exc}") from None
        if self.checkpoint.size != size:
            raise Tampered(
                f"the proof file says tree_size {size}, its signed checkpoint {self.checkpoint.size}"
            )
        self.purges = read_purges(head, "the proof file's first line")  # not signed: only what it says
        self.pending: dict[str, Any] | None = None

    def _next(self) -> dict[str, Any] | None:
        for line in self.lines:
            self.line += 1
            if line.strip():
                try:
                    proof = json.loads(line)
                    seq, hashes = proof["seq"], _b64_hashes(proof["hashes"])
                except (ValueError, KeyError, TypeError):
                    return {"seq": None}
                if (
                    not isinstance(seq, int)
                    or isinstance(seq, bool)
                    or hashes is None
                    or set(proof)
                    != {
                        "seq",
                        "hashes",
                    }
                ):
                    return {"seq": None}
                return {"seq": seq, "hashes": hashes}
        return None

    def check(self, row: dict[str, Any]) -> str | None:
        """Why this row is not proven in the signed tree, or None."""
        size, seq = self.checkpoint.size, row["seq"]
        if not self.checkpoint.origin.endswith("/" + row["account_id"]):
            return f"the rows are of {row['account_id']}, the signed tree is {self.checkpoint.origin}"
        if seq > size:
            return f"beyond the signed tree of {size} entries (added after it was signed, or forged)"
        proof = self._next()
        if proof is None:
            return "the proof file ends before this row (a row was added to the export)"
        if proof["seq"] is None:
            return f"proof file line {self.line} is not a proof line"
        if proof["seq"] < seq:
            return f"the proof file proves seq {proof['seq']}, which the export lacks (a row was removed)"
        if proof["seq"] > seq:
            return f"the proof file has no proof for this row (next is seq {proof['seq']}): a row was added"
        root = inclusion_root(seq - 1, size, leaf_hash(row["hash"]), proof["hashes"])
        if root != self.checkpoint.root:
            return f"not in the signed tree of {size} entries: its audit path leads to another root"
        return None

    def finish(self) -> str | None:
        proof = self._next()
        if proof is None:
            return None
        if proof["seq"] is None:
            return f"proof file line {self.line} is not a proof line"
        return f"the proof file proves seq {proof['seq']}, which the export lacks (a row was removed)"


class Tampered(Exception):
    """A signed file that does not hold (one line, exit 1)."""


# ---- the signed manifest: how many rows, which ones, for which filter and tree ----
def _signed_by(key: VerifierKey, body: dict[str, Any], signature: Any) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True) if isinstance(signature, str) else b""
    except ValueError:
        return False
    return len(raw) == 64 and _ed25519_valid(key.public_key, raw, canonical_text(body).encode("utf-8"))


MANIFEST_FIELDS = {
    "account_id": str, "filter": dict, "format": str, "as_of_seq": int, "rows": int,
    "first_seq": (int, None), "last_seq": (int, None), "slice_digest": str, "checkpoint": str,
    "signature": str,
}  # fmt: skip
# Present when seqs up to ``as_of_seq`` were purged under the account's retention (API.md part 2).
PURGE_FIELDS = {"purged": list, "purges": list}
PURGE_RUN_FIELDS = {"from": int, "to": int, "older_than": str, "retention_days": int, "purge_seq": int}


@dataclass(frozen=True)
class Purge:
    """Seqs ``first``..``last`` purged by one run, under a retention of ``retention_days`` days: every entry
    that occurred before ``older_than`` and no legal hold covered."""

    first: int
    last: int
    older_than: str
    retention_days: int
    purge_seq: int


def read_purges(obj: dict[str, Any], where: str) -> list[Purge]:
    """The ``purges`` a manifest or proof file states (none when it states none); a malformed statement is
    tampering in a signed manifest and unreadable in a proof file, so the caller decides."""
    if "purged" not in obj and "purges" not in obj:
        return []
    runs, ranges = obj.get("purges"), obj.get("purged")
    if not isinstance(runs, list) or not isinstance(ranges, list):
        raise UnreadableExport(f"{where}: purged and purges must both be lists")
    out = []
    for run in runs:
        if not isinstance(run, dict) or _type_problem(run, PURGE_RUN_FIELDS, ""):
            raise UnreadableExport(
                f"{where}: a purge is not {{from, to, older_than, retention_days, purge_seq}}"
            )
        if not 1 <= run["from"] <= run["to"] < run["purge_seq"]:
            raise UnreadableExport(f"{where}: a purge's seqs are out of order")
        out.append(Purge(run["from"], run["to"], run["older_than"], run["retention_days"], run["purge_seq"]))
    out.sort(key=lambda p: p.first)
    merged: list[list[int]] = []
    for p in out:
        if merged and p.first <= merged[-1][1]:
            raise UnreadableExport(f"{where}: two purges name the same seqs")
        if merged and merged[-1][1] + 1 == p.first:
            merged[-1][1] = p.last
        else:
            merged.append([p.first, p.last])
    if ranges != merged:
        raise UnreadableExport(f"{where}: purged is not the ranges its purges name")
    return out


def split_gaps(
    gaps: list[tuple[int, int]], purges: list[Purge]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The gaps between rows cut into what the purges removed and what the slice's filter left out."""
    purged, other = [], []
    for lo, hi in gaps:
        at = lo
        for p in purges:
            if p.last < at or p.first > hi:
                continue
            if p.first > at:
                other.append((at, p.first - 1))
            purged.append((max(at, p.first), min(hi, p.last)))
            at = min(hi, p.last) + 1
        if at <= hi:
            other.append((at, hi))
    return purged, other


def describe_purges(purges: list[Purge], source: str) -> str:
    """One line naming each purged range and the policy it went under."""
    shown = "; ".join(
        f"seq {p.first}-{p.last} (retention {p.retention_days} days: entries before {p.older_than}, "
        f"purge entry seq {p.purge_seq})"
        for p in purges[:10]
    )
    more = f"; and {len(purges) - 10} more" if len(purges) > 10 else ""
    return f"PURGED ({source}): {shown}{more}; removed under the retention policy, not tampered with"


@dataclass(frozen=True)
class Manifest:
    body: dict[str, Any]
    checkpoint: Checkpoint
    purges: list[Purge] = field(default_factory=list)


def open_manifest(text: str, key: VerifierKey) -> Manifest:
    """The manifest's statement, once its signature and its checkpoint's verify with ``key``."""
    try:
        manifest = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except ValueError:
        raise UnreadableExport("the manifest is not JSON") from None
    if not isinstance(manifest, dict) or "signature" not in manifest:
        raise UnreadableExport("not a signed manifest")
    body = {k: v for k, v in manifest.items() if k != "signature"}
    if not _signed_by(key, body, manifest["signature"]):
        raise Tampered("the manifest's signature does not verify with the verifier key")
    fields = {**MANIFEST_FIELDS, **PURGE_FIELDS} if set(PURGE_FIELDS) & set(manifest) else MANIFEST_FIELDS
    if problem := _type_problem(manifest, fields, "the manifest's "):
        raise Tampered(problem)
    try:
        purges = read_purges(manifest, "the manifest")
    except UnreadableExport as exc:
        raise Tampered(str(exc)) from None
    try:
        checkpoint = open_checkpoint(manifest["checkpoint"], key)
    except BadCheckpoint as exc:
        raise Tampered(f"the manifest's checkpoint: {exc}") from None
    if checkpoint.size != manifest["as_of_seq"]:
        raise Tampered(f"the manifest is as of seq {manifest['as_of_seq']}, its checkpoint {checkpoint.size}")
    if not checkpoint.origin.endswith("/" + manifest["account_id"]):
        raise Tampered(f"the manifest is for {manifest['account_id']}, its checkpoint {checkpoint.origin}")
    if any(p.last > checkpoint.size for p in purges):
        raise Tampered("the manifest names purged seqs beyond its signed tree")
    return Manifest(body, checkpoint, purges)


def manifest_problem(report: Report, manifest: Manifest, fmt: str | None) -> str | None:
    """Why the rows are not the ones the signed manifest lists, or None when they are."""
    m = manifest.body
    if fmt is not None and m["format"] != fmt:
        return f"the manifest is for a {m['format']} export, this file is {fmt}"
    if report.rows and report.account_id != m["account_id"]:
        return f"the manifest is for {m['account_id']}, the rows are of {report.account_id}"
    if report.rows != m["rows"]:
        return f"the manifest lists {m['rows']} rows, the file has {report.rows}: rows were removed or added"
    if (report.first_seq, report.last_seq) != (m["first_seq"], m["last_seq"]) or (
        report.digest.hexdigest() != m["slice_digest"]
    ):
        return "the rows' seqs and hashes differ from the ones the manifest signed: rows were replaced"
    return None


def describe_filter(f: dict[str, Any]) -> str:
    if not f:
        return "the whole log (no filter)"
    return "filter " + ", ".join(f"{k}={v}" for k, v in sorted(f.items()))


# ---- inputs ----
def read_verifier_key(value: str) -> VerifierKey:
    """The note verifier key itself, or a file holding it."""
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as f:
                return parse_verifier_key(f.read(4096))
        except (OSError, UnicodeDecodeError) as exc:
            raise CannotCheck(f"--verifier-key: cannot read {value}: {exc}") from None
    if "+" in value:
        return parse_verifier_key(value)
    raise CannotCheck(f"--verifier-key: {value} is not a verifier key, nor a readable file")


def export_format(path: str) -> str | None:
    """csv, jsonl, or None for an empty file (an empty JSON Lines slice)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        first = f.readline()
    if not first:
        return None
    return "jsonl" if first.lstrip().startswith("{") else "csv"


def rows_from_file(path: str) -> Iterator[dict[str, Any]]:
    fmt = export_format(path)
    with open(path, encoding="utf-8-sig", newline="") as f:
        if fmt == "csv":
            yield from rows_from_csv(f)
        elif fmt == "jsonl":
            yield from rows_from_jsonl(f)


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
            page = json.loads(response.read().decode("utf-8"))
        entries.extend(flatten(e) for e in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return sorted(entries, key=lambda e: e["seq"] or 0)


# ---- the verdict ----
def describe(report: Report, purges: list[Purge] | None = None) -> str:
    if not report.ok:
        held = "1 row before it holds" if report.rows == 1 else f"{report.rows} rows before it hold"
        if report.bad_seq is None and report.bad_line is None:
            return f"TAMPERED: {report.problem} ({held})"
        where = f"seq {report.bad_seq}" if report.bad_seq is not None else f"line {report.bad_line}"
        return f"TAMPERED: {where}: {report.problem} ({held})"
    if not report.rows:
        return "OK: the export holds no rows"
    span = f"seq {report.first_seq}..{report.last_seq}"
    purged, other = split_gaps(report.gaps, purges or [])
    gaps = ""
    for found, what in ((purged, "purged"), (other, "not in the slice")):
        if found:
            shown = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in found[:10])
            more = f" and {len(found) - 10} more" if len(found) > 10 else ""
            noun = "gap" if len(found) == 1 else "gaps"
            gaps += f"; {len(found)} {noun} ({what}: {shown}{more})"
    return f"OK: {report.rows} rows verified, {span}{gaps}; last hash {report.head_hash}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"CANNOT CHECK: {message} (see --help)\n")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(description="Verify an activity-log export with the standard library alone.")
    parser.add_argument("file", nargs="?", help="an export: CSV or JSON Lines")
    parser.add_argument("--proof", help="the export's proof file (.proof.jsonl): every row in a signed tree")
    parser.add_argument("--manifest", help="the export's signed manifest (.manifest.json): no row missing")
    parser.add_argument(
        "--verifier-key",
        help="with --proof or --manifest: the account's note verifier key <name>+<hex>+<base64>, or a file "
        "holding it; obtain it out of band (GET /api/v1/accounts/ACC/verifier-key, once) and pin it",
    )
    parser.add_argument("--url", help="instead of a file: the service's base URL")
    parser.add_argument("--key", help="with --url: an API key that may read the log")
    args = parser.parse_args(argv)
    if bool(args.file) == bool(args.url) or (args.url and not args.key):
        parser.error("give an export FILE, or --url with --key")
    if args.url and (args.proof or args.manifest):
        parser.error("--proof and --manifest check a FILE, not --url")
    if (args.proof or args.manifest) and not args.verifier_key:
        parser.error(
            "--proof and --manifest need --verifier-key: a key read from the file it checks proves nothing"
        )
    if args.verifier_key and not (args.proof or args.manifest):
        parser.error("--verifier-key checks a --proof or a --manifest; give one")
    return args


def _check(args: argparse.Namespace) -> list[str]:
    """The lines that say what was verified; raises Tampered, CannotCheck or an input error."""
    key = read_verifier_key(args.verifier_key) if args.verifier_key else None
    manifest = None
    if args.manifest:
        assert key is not None
        with open(args.manifest, encoding="utf-8") as f:
            manifest = open_manifest(f.read(1 << 20), key)
    if args.url:
        report = verify_rows(iter(rows_from_api(args.url, args.key)))
        if not report.ok:
            raise Tampered(describe(report).removeprefix("TAMPERED: "))
        return [describe(report)]
    fmt = export_format(args.file)
    with contextlib.ExitStack() as files:
        proofs = None
        if args.proof:
            assert key is not None
            proofs = ProofFile(iter(files.enter_context(open(args.proof, encoding="utf-8"))), key)
            signed = manifest.checkpoint if manifest else None
            if signed and proofs.checkpoint.size == signed.size and proofs.checkpoint.root != signed.root:
                raise Tampered(f"the proof file and the manifest sign two roots for tree {signed.size}")
        report = verify_rows(rows_from_file(args.file), proofs)
    if not report.ok:
        raise Tampered(describe(report).removeprefix("TAMPERED: "))
    # What the signed manifest says was purged, else what the proof file says (not signed, but a gap is
    # never tampering in a slice: this only names why the seqs are missing).
    purges, source = (manifest.purges, "the signed manifest") if manifest else ([], "")
    if not purges and proofs is not None and proofs.purges:
        purges, source = proofs.purges, "the proof file"
    lines = [describe(report, purges)]
    if proofs is not None:
        c = proofs.checkpoint
        lines.append(
            f"PROOF OK: all {report.rows} rows are in the tree of {c.size} entries signed for {c.origin} "
            f"(root {base64.b64encode(c.root).decode()})"
        )
    if manifest is not None:
        if problem := manifest_problem(report, manifest, fmt):
            raise Tampered(problem)
        m, root = manifest.body, base64.b64encode(manifest.checkpoint.root).decode()
        lines.append(
            f"MANIFEST OK: all {m['rows']} rows of {describe_filter(m['filter'])} as of seq {m['as_of_seq']} "
            f"are present and unaltered; signed tree: {manifest.checkpoint.size} entries, root {root}"
        )
    if purges:
        lines.append(describe_purges(purges, source))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        lines = _check(args)
    except Tampered as exc:
        print(f"TAMPERED: {exc}")
        return 1
    except CannotCheck as exc:
        print(f"CANNOT CHECK: {exc}")
        return 2
    except (OSError, UnreadableExport, UnicodeDecodeError, csv.Error) as exc:
        print(f"CANNOT CHECK: {exc}")
        return 2
    except Exception as exc:  # one clear line, never a traceback
        print(f"CANNOT CHECK: {type(exc).__name__}: {exc}")
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
