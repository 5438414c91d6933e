"""A year of chained entries for many accounts, generated in time order, fast.

Rows come out day by day, all accounts interleaved as in production (the big tenant's rows are spread over
the table, not stored together). Volume follows the calendar: weekdays busier than weekends, office hours
busier than nights, and a year of growth. Each row is exactly what the recorder would write: its canonical
JSON is assembled from pre-encoded pieces (``population``) instead of ``json.dumps`` per row, and its hash is
``sha256(prev_hash + "\\n" + canonical)``; every few thousand rows the assembled text is checked against
the product's own ``canonical_json`` and ``entry_hash``, so a drift in the chain rule stops the seeding.
Each account's Merkle tree grows with its chain through the product's own ``log.tree.append``: the head
carries the frontier, and every ``activity_tree`` row an entry completes is kept for the loader.
"""

from __future__ import annotations

import hashlib
import json
import random
from bisect import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from activitylog.log import tree
from activitylog.log.actions import ALL_ACTIONS, summarize
from activitylog.log.chain import CHAINED_FIELDS, GENESIS, canonical_json, entry_hash
from activitylog.log.csv_sql import CSV_COLUMNS, csv_escapes

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from diffs import NOT_SEEDED
from population import NO_ADDRESS, Actor, Population, cumulative, enc, zipf

# The order the canonical JSON puts the chained fields in; the row assembly below follows it.
CANONICAL_ORDER = (
    "account_id", "action", "actor_id", "actor_name", "actor_type", "changes", "ip", "occurred_at",
    "on_behalf_of", "request_id", "resource_id", "resource_name", "resource_type", "seq", "user_agent",
)  # fmt: skip
assert tuple(sorted(CHAINED_FIELDS)) == CANONICAL_ORDER, "the chained fields changed: update bench/history.py"

COLUMNS = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "ip_key", "user_agent", "action", "resource_type", "resource_id", "resource_name", "summary",
    "changes", "request_id", "prev_hash", "hash", "csv_escapes",
)  # fmt: skip
assert tuple(c for c in COLUMNS if c in CSV_COLUMNS) == CSV_COLUMNS, "the CSV columns changed: update COLUMNS"
_CSV_CELLS = [COLUMNS.index(c) for c in CSV_COLUMNS]
# The commonest actions first; the rest of the vocabulary follows (Zipf weights by position).
COMMON_ACTIONS = (
    "contact.create", "contact.update", "broadcast.send", "user.login", "address.suppress",
    "broadcast.create", "broadcast.update", "list.import", "contact.delete", "user.logout",
    "broadcast.schedule", "segment.create", "list.create", "broadcast.pause", "activity_log.export",
)  # fmt: skip
ADMIN_ACTIONS = frozenset({"api_key.create", "api_key.revoke", "api_key.rotate", "account.update"}) | {
    a for a in ALL_ACTIONS if a.startswith("user.")
}
HOUR_WEIGHTS = [0.3] * 7 + [1.0] * 12 + [0.3] * 5  # UTC hours: office hours busier
CHECK_EVERY = 4096
US_PER_HOUR = 3_600_000_000


@dataclass
class Head:
    """The running end of one account's chain, and its Merkle tree's right edge."""

    seq: int = 0
    hash: str = GENESIS
    occurred_at: str | None = None  # the contract's string form
    frontier: list[bytes] = field(default_factory=list)


def account_weights(accounts: int, big_share: float) -> list[float]:
    """The first account holds ``big_share`` of the entries; the others share the rest, Zipf-skewed."""
    rest = zipf(accounts - 1, 0.8)
    total = sum(rest)
    return [big_share, *((1 - big_share) * w / total for w in rest)]


def day_counts(total: int, first_day: date, days: int) -> list[int]:
    """``total`` entries over ``days`` days: weekends at 40%, and 50% growth over the period."""
    weights = [
        (0.4 if (first_day + timedelta(d)).weekday() >= 5 else 1.0) * (1 + 0.5 * d / days)
        for d in range(days)
    ]
    scale = total / sum(weights)
    counts = [int(w * scale) for w in weights]
    for d in sorted(range(days), key=lambda d: weights[d] * scale - counts[d], reverse=True)[
        : total - sum(counts)
    ]:
        counts[d] += 1
    return counts


class History:
    """Generates every account's entries, day after day, continuing each account's chain from ``heads``."""

    def __init__(
        self,
        rng: random.Random,
        pops: list[Population],
        heads: list[Head],
        pools: dict[str, list[str]],
        *,
        sqlite_times: bool,
    ) -> None:
        self.rng, self.pops, self.heads, self.pools = rng, pops, heads, pools
        self.sqlite_times = sqlite_times
        rest = {a for a in ALL_ACTIONS if a.split(".")[0] not in NOT_SEEDED} - set(COMMON_ACTIONS)
        self.actions = [*COMMON_ACTIONS, *sorted(rest - {"account.create"})]
        self.action_cum = cumulative(zipf(len(self.actions), 0.9))
        self.action_json = {a: enc(a) for a in ALL_ACTIONS}
        self.hour_cum = cumulative(HOUR_WEIGHTS)
        self.summaries: dict[tuple[str, str | None], str] = {}
        self.generated = 0
        # (account_id, seq, hashes): the ``activity_tree`` rows, as the recorder writes them
        self.tree_rows: list[tuple[str, int, bytes]] = []

    def _times(self, day: date, n: int) -> list[tuple[str, str]]:
        """``n`` sorted instants in the day, as (contract string, database text)."""
        rng, hour_cum = self.rng.random, self.hour_cum
        top = hour_cum[-1]
        offsets = sorted(
            bisect(hour_cum, rng() * top) * US_PER_HOUR + int(rng() * US_PER_HOUR) for _ in range(n)
        )
        prefix = day.isoformat()
        out = []
        for offset in offsets:
            h, rest = divmod(offset, US_PER_HOUR)
            m, rest = divmod(rest, 60_000_000)
            s, us = divmod(rest, 1_000_000)
            clock = f"{h:02d}:{m:02d}:{s:02d}.{us:06d}"
            out.append((f"{prefix}T{clock}Z", f"{prefix} {clock}"))
        return out

    def _actor(self, pop: Population, action: str, verb: str) -> Actor:
        rnd = self.rng.random
        if verb in ("login", "logout", "login_failed") or action in ADMIN_ACTIONS:
            return pop.people[int(rnd() * len(pop.people))]
        if action == "broadcast.send" and rnd() < 0.5:
            return pop.scheduler
        if action in ("address.suppress", "broadcast.pause") and rnd() < 0.4:
            return pop.rules[int(rnd() * len(pop.rules))]
        return pop.general[bisect(pop.general_cum, rnd() * pop.general_cum[-1])]

    def day(self, day: date, accounts: list[int]) -> list[tuple[Any, ...]]:
        """The day's rows, oldest first; ``accounts`` says whose each successive entry is."""
        rnd, getrandbits = self.rng.random, self.rng.getrandbits
        actions, action_cum = self.actions, self.action_cum
        top = action_cum[-1]
        rows = []
        for (iso, db_time), a in zip(self._times(day, len(accounts)), accounts, strict=True):
            pop, head = self.pops[a], self.heads[a]
            if head.seq == 0:  # an account's history starts with its creation
                action, actor = "account.create", pop.cli
            else:
                action = actions[bisect(action_cum, rnd() * top)]
            rtype, verb = action.split(".", 1)
            if head.seq:
                actor = self._actor(pop, action, verb)
            if rtype == "user" and verb in ("login", "logout", "login_failed"):
                resource = pop.own_resource[actor.id]  # a sign-in is about the person signing in
            else:
                cum = pop.resource_cum[rtype]
                resource = pop.resources[rtype][bisect(cum, rnd() * cum[-1])]
            address = actor.addresses[int(rnd() * len(actor.addresses))] if actor.addresses else NO_ADDRESS
            agent, agent_json = (
                actor.agents[int(rnd() * len(actor.agents))] if actor.agents else (None, "null")
            )
            on_behalf = f"session:{pop.people[0].id}" if actor is pop.scheduler else None
            request_id = f"{getrandbits(104):026x}" if actor.addresses else None
            request_json = f'"{request_id}"' if request_id else "null"
            pool = self.pools[action]
            changes = pool[int(rnd() * len(pool))]
            seq, prev = head.seq + 1, head.hash
            on_behalf_json = enc(on_behalf) if on_behalf else "null"
            canonical = (
                f"{pop.head_frag}{self.action_json[action]}{actor.frag}{changes}"
                f',"ip":{address.json},"occurred_at":"{iso}","on_behalf_of":{on_behalf_json}'
                f',"request_id":{request_json}'
                f'{resource.frag}{seq},"user_agent":{agent_json}}}'
            )
            digest = hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()
            self.generated += 1
            if self.generated % CHECK_EVERY == 1:
                _check(canonical, prev, digest)
            key = (action, resource.name)
            summary = self.summaries.get(key)
            if summary is None:
                summary = self.summaries[key] = summarize(action, resource.name)
            row = [
                pop.account_id, seq, iso, actor.type, actor.id, actor.name, on_behalf, address.ip or None,
                address.key, agent, action, rtype, resource.id, resource.name, summary, changes,
                request_id, prev, digest,
            ]  # fmt: skip
            escapes = csv_escapes([row[i] for i in _CSV_CELLS])  # as the recorder writes it
            if self.sqlite_times:
                row[2] = db_time
            rows.append((*row, escapes))
            head.frontier, completed = tree.append(head.frontier, head.seq, digest)
            if completed:
                self.tree_rows.append((pop.account_id, seq, completed))
            head.seq, head.hash, head.occurred_at = seq, digest, iso
        return rows

    def days(
        self, first_day: date, counts: list[int], weights: list[float]
    ) -> Iterator[list[tuple[Any, ...]]]:
        cum = cumulative(weights)
        indices = range(len(weights))
        for d, n in enumerate(counts):
            if n:
                yield self.day(first_day + timedelta(d), self.rng.choices(indices, cum_weights=cum, k=n))


def _check(canonical: str, prev: str, digest: str) -> None:
    """The assembled text must be what the product's chain code makes of the same entry."""
    obj = json.loads(canonical)
    if canonical_json(obj) != canonical or entry_hash(prev, obj) != digest:
        raise AssertionError(f"seeded entry does not match log.chain: {canonical[:200]}")


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
