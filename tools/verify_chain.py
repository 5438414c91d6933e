#!/usr/bin/env python3
"""Re-compute an account's activity-log hash chain from the API's output, with the Python standard library
alone — so whoever checks the log need not trust this project's code.

    python3 tools/verify_chain.py --url http://127.0.0.1:8000 --key alk_...      # fetch every entry
    python3 tools/verify_chain.py entries.jsonl                                   # or read saved entries

The rule (API.md, "Integrity"): hash = sha256_hex(prev_hash + "\\n" + canonical JSON of the chained
fields); seq 1 links to 64 zeros. Exit 0 when the chain is intact from seq 1, 1 with the first bad seq.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator

GENESIS = "0" * 64


def chained_fields(entry: dict) -> dict:
    """The API's entry shape flattened to the fields the hash covers."""
    return {
        "account_id": entry["account_id"],
        "seq": entry["seq"],
        "occurred_at": entry["occurred_at"],
        "actor_type": entry["actor"]["type"],
        "actor_id": entry["actor"]["id"],
        "actor_name": entry["actor"]["name"],
        "on_behalf_of": entry["on_behalf_of"],
        "ip": entry["ip"],
        "user_agent": entry["user_agent"],
        "action": entry["action"],
        "resource_type": entry["resource"]["type"],
        "resource_id": entry["resource"]["id"],
        "resource_name": entry["resource"]["name"],
        "changes": entry["changes"],
        "request_id": entry["request_id"],
    }


def entry_hash(prev_hash: str, entry: dict) -> str:
    canonical = json.dumps(chained_fields(entry), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + "\n" + canonical).encode("utf-8")).hexdigest()


def verify(entries: Iterable[dict]) -> tuple[bool, int, str]:
    """Oldest first. Returns (ok, entries checked, head hash or the reason it failed)."""
    prev_hash, expected = GENESIS, 1
    for entry in entries:
        seq = entry["seq"]
        if seq != expected:
            return False, expected - 1, f"seq {expected}: missing (next entry is seq {seq})"
        if entry["prev_hash"] != prev_hash:
            return False, expected - 1, f"seq {seq}: prev_hash does not link to seq {seq - 1}"
        if entry_hash(prev_hash, entry) != entry["hash"]:
            return False, expected - 1, f"seq {seq}: hash does not match the entry's content"
        prev_hash, expected = entry["hash"], expected + 1
    return True, expected - 1, prev_hash


def fetch(url: str, key: str, page_size: int = 1000) -> Iterator[dict]:
    """Every entry of the key's account, newest first pages, returned oldest first."""
    entries: list[dict] = []
    cursor = None
    while True:
        query = {"limit": str(page_size), **({"cursor": cursor} if cursor else {})}
        request = urllib.request.Request(  # noqa: S310 (the auditor names the URL)
            f"{url.rstrip('/')}/api/v1/activity?{urllib.parse.urlencode(query)}",
            headers={"Authorization": f"Bearer {key}", "User-Agent": "verify_chain.py"},
        )
        with urllib.request.urlopen(request) as response:  # noqa: S310
            page = json.load(response)
        entries.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return iter(sorted(entries, key=lambda e: e["seq"]))


def read(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows = json.loads(text)
    elif stripped.startswith("{") and '"data"' in stripped[:200] and "\n{" not in stripped:
        rows = json.loads(text)["data"]
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return iter(sorted(rows, key=lambda e: e["seq"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="entries as JSON Lines, a JSON array, or an API page")
    parser.add_argument("--url", help="the service's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--key", help="an API key with scope full or activity:read")
    args = parser.parse_args(argv)
    if bool(args.file) == bool(args.url):
        parser.error("give a FILE or --url with --key")
    if args.url and not args.key:
        parser.error("--url needs --key")
    entries = read(args.file) if args.file else fetch(args.url, args.key)
    ok, checked, detail = verify(entries)
    if ok:
        print(f"OK: {checked} entries, chain intact from seq 1; head {detail}")
        return 0
    print(f"BROKEN after {checked} good entries: {detail}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
