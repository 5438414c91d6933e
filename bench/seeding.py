"""Seeding a large, realistic log fast: 1,000 accounts, one holding 20% of the entries, a year of history.

The account under test, its owner and its API key are made by the real services (so the API can be called
as that account, and its chain starts as the product starts chains). The other accounts get bare
``accounts`` rows. Then a year of entries for all of them is generated (``history``) and bulk-loaded
(``bulk``), each chain continued from its head, and every ``activity_heads`` row is moved to its chain's
end. Each account's Merkle tree is continued with the chain (``log.tree.append``, as the recorder does it):
its ``activity_tree`` rows are loaded after the entries and the head carries the tree's right edge, so a
seeded log verifies and serves proofs like one the recorder wrote. The query benchmark re-verifies the big
account's chain through the API before trusting the data.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any

from activitylog.db.base import Database
from activitylog.log import tree
from activitylog.log.chain import format_instant
from activitylog.log.record import RequestContext
from activitylog.services import accounts, api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
import bulk
from diffs import diff_pools, ulid_id
from history import Head, History, account_weights, day_counts, parse_instant
from population import Population, make_population
from stores import Store

DAYS = 365
BIG_SHARE = 0.2
SEARCH_WORD = "spring"  # in some broadcast names ("Spring picks #…"), so ``q`` has something to find


@dataclass
class Seeded:
    """What the other benchmarks need to know about the seeded data."""

    account_id: str
    api_key: str
    population: Population
    start: datetime
    end: datetime
    accounts: int
    generated: dict[str, int] = field(default_factory=dict)  # account_id -> rows written in bulk
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @property
    def seconds(self) -> float:
        return sum(self.phases.values())

    @property
    def total(self) -> int:
        return sum(self.generated.values())


def _account_under_test(db: Database, start: datetime, tag: str) -> tuple[str, str]:
    """The big account, made by the services at the start of the year: (account id, API key secret)."""
    account = accounts.create_account(
        db,
        name="Bench Co",
        owner_email=f"owner-{tag}@bench.example",
        password="bench password, not a secret",
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=lambda: start,
    ).account.id
    uow = UnitOfWork(db, account_id=account, actor=SYSTEM_CLI, context=RequestContext(), clock=lambda: start)
    return account, api_keys.create_api_key(uow, name="bench reader", scopes=["full"]).secret


def seed(
    store: Store,
    *,
    entries: int,
    accounts_total: int = 1000,
    seed_value: int = 20261128,
    big_share: float = BIG_SHARE,
    days: int = DAYS,
) -> Seeded:
    """``entries`` entries over ``accounts_total`` accounts (the first holding ``big_share``), ``days`` long
    (a year unless told)."""
    rng = random.Random(seed_value)
    phases: dict[str, float] = {}
    began = time.perf_counter()
    first_day = datetime.now(UTC).date() - timedelta(days=days)  # the history ends yesterday
    start = datetime.combine(first_day, clock(), tzinfo=UTC)
    db = store.app_db()
    try:
        target, key = _account_under_test(db, start, f"{seed_value}-{rng.getrandbits(32):x}")
    finally:
        db.dispose()
    ids = [target, *(ulid_id(rng, "acc") for _ in range(accounts_total - 1))]
    weights = account_weights(accounts_total, big_share)
    pops = [
        make_population(rng, a, f"t{i}", int(entries * w))
        for i, (a, w) in enumerate(zip(ids, weights, strict=True))
    ]
    pools = diff_pools(rng)
    phases["populations"] = time.perf_counter() - began

    conn = store.raw_connect()
    try:
        heads = [_head(store, conn, target), *(Head() for _ in ids[1:])]
        first_seq = [h.seq for h in heads]
        bulk.check_columns(store, conn)
        indexes = bulk.secondary_indexes(store, conn)
        bulk.drop_indexes(store, conn, indexes)
        bulk.insert_accounts(
            store, conn, [(a, f"Tenant {i}", store.bind_time(start)) for i, a in enumerate(ids[1:])]
        )
        began = time.perf_counter()
        history = History(rng, pops, heads, pools, sqlite_times=store.is_sqlite)
        bulk.load(store, conn, history.days(first_day, day_counts(entries, first_day, days), weights))
        phases["generate + load"] = time.perf_counter() - began
        began = time.perf_counter()
        bulk.load_tree(store, conn, history.tree_rows)
        phases[f"load {len(history.tree_rows):,} tree rows"] = time.perf_counter() - began
        history.tree_rows.clear()
        began = time.perf_counter()
        bulk.create_indexes(store, conn, indexes)
        phases[f"build {len(indexes)} indexes"] = time.perf_counter() - began
        ends = [
            (a, h.seq, h.hash, store.bind_time(parse_instant(h.occurred_at)), b"".join(h.frontier))
            for a, h in zip(ids, heads, strict=True)
            if h.occurred_at
        ]
        bulk.write_heads(store, conn, ends, existing={target})
    finally:
        conn.close()
    began = time.perf_counter()
    bulk.settle(store)
    phases["settle (VACUUM ANALYZE / WAL checkpoint)"] = time.perf_counter() - began
    return Seeded(
        account_id=target,
        api_key=key,
        population=pops[0],
        start=start,
        end=datetime.combine(first_day + timedelta(days), clock(), tzinfo=UTC),
        accounts=accounts_total,
        generated={a: h.seq - s for a, h, s in zip(ids, heads, first_seq, strict=True)},
        phases=phases,
    )


def _head(store: Store, conn: Any, account_id: str) -> Head:
    seq, digest, at, edge = conn.execute(
        store.sql("SELECT seq, hash, occurred_at, tree FROM activity_heads WHERE account_id = ?"),
        (account_id,),
    ).fetchone()
    when = store.read_time(at)
    return Head(seq, digest, format_instant(when) if when else None, tree.split(edge))
