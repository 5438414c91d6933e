"""Seeding a large, realistic log fast: rows written straight into ``activity_entries``, chain included.

Going through the recorder costs a durable transaction per entry (minutes for 200,000 rows); the query
benchmark only needs rows that are exactly what the recorder would have written. So the accounts, owners
and API key are made by the real services, and the history behind them is generated here with the
product's own chain function (``log.chain.entry_hash``), ``ip_key`` and summaries, then loaded in bulk
(executemany on SQLite, COPY on PostgreSQL) and the head rows moved to the last entry. The query benchmark
re-checks every chain through ``GET /api/v1/activity/verify`` before trusting the data.

The history is skewed the way real ones are: a few actors, actions and resources account for most rows
(Zipf weights), people act from a handful of addresses in their office network, rules and the system act
with no address, and timestamps are spread over a year. Several other accounts are interleaved in time
with the one under test, so a query that forgot its tenant condition would show.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from activitylog.db.base import Database
from activitylog.log.actions import ALL_ACTIONS, summarize
from activitylog.log.chain import canonical_json, entry_hash, format_instant
from activitylog.log.record import RequestContext, ip_key
from activitylog.services import accounts, api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from stores import Store

COLUMNS = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "ip_key", "user_agent", "action", "resource_type", "resource_id", "resource_name", "summary",
    "changes", "request_id", "prev_hash", "hash",
)  # fmt: skip
OTHER_ACCOUNTS = 4
SQLITE_CHUNK = 20_000

# The commonest actions first; the rest of the vocabulary follows (Zipf weights by position).
COMMON_ACTIONS = (
    "contact.create", "contact.update", "broadcast.send", "user.login", "address.suppress",
    "broadcast.create", "broadcast.update", "list.import", "contact.delete", "user.logout",
    "broadcast.schedule", "segment.create", "list.create", "broadcast.pause",
)  # fmt: skip
ACTION_COUNT = 40  # of the 41 in the vocabulary; account.create happens once per account, by the services
IPV4_BLOCKS = (
    "203.0.113", "198.51.100", "192.0.2", "100.64.10", "100.64.20", "172.16.5", "10.20.30", "10.20.31",
)  # fmt: skip
IPV6_BLOCKS = ("2001:db8:a", "2001:db8:b", "2001:db8:c", "2001:db8:d")
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
CLIENTS = ("python-httpx/0.28", "Zapier/1.0", "curl/8.5.0", "node-fetch/3.3")
TOPICS = ("Spring picks", "Summer sale", "Weekly digest", "Product update", "Webinar invite", "New arrivals")
SEARCH_WORD = "spring"  # appears in some broadcast names, so ``q`` has something to find


@dataclass(frozen=True)
class ActorSpec:
    type: str
    id: str
    name: str | None
    ips: tuple[str, ...]
    agents: tuple[str, ...]


@dataclass(frozen=True)
class Population:
    """Who acts on what in one account, with the weights that make the history skewed."""

    actors: list[ActorSpec]
    actor_cum: list[float]
    people: list[ActorSpec]
    actions: list[str]
    action_cum: list[float]
    resources: dict[str, list[tuple[str, str | None]]]
    resource_cum: dict[str, list[float]]
    ip_keys: dict[str, str | None]


@dataclass
class Head:
    """The running end of one account's chain while its rows are generated."""

    seq: int
    hash: str
    occurred_at: datetime


@dataclass
class Seeded:
    """What the query benchmark needs to know about the seeded data."""

    account_id: str
    api_key: str
    population: Population
    start: datetime
    end: datetime
    generated: dict[str, int] = field(default_factory=dict)  # account_id -> rows written in bulk
    seconds: float = 0.0


def _cum(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _zipf(n: int, s: float) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(n)]


def _ip_pool() -> list[str]:
    """200 addresses: 20 in each of eight IPv4 /24s, 10 in each of four IPv6 /64s; grouped by network."""
    v4 = [f"{block}.{host}" for block in IPV4_BLOCKS for host in range(10, 30)]
    v6 = [f"{block}::{host:x}" for block in IPV6_BLOCKS for host in range(1, 11)]
    return v4 + v6


def _actors(rng: random.Random, tag: str) -> list[ActorSpec]:
    """50 actors: 30 people, 12 API keys, 5 rules, 3 system; people and keys get a slice of one network."""
    ips, addressed = _ip_pool(), 42
    out: list[ActorSpec] = []
    for i in range(addressed):
        own = tuple(ips[i * len(ips) // addressed : (i + 1) * len(ips) // addressed])
        if i < 30:
            out.append(ActorSpec("session", _id(rng, "usr"), f"user{i}.{tag}@bench.example", own, BROWSERS))
        else:
            out.append(ActorSpec("api_key", _id(rng, "key"), f"Integration {i - 29}", own, CLIENTS))
    out += [ActorSpec("rule", _id(rng, "rul"), f"Rule {i}", (), ()) for i in range(1, 6)]
    out += [ActorSpec("system", name, None, (), ()) for name in ("scheduler", "dispatcher", "cli")]
    return out


def _id(rng: random.Random, prefix: str) -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    return prefix + "_01" + "".join(rng.choice(alphabet) for _ in range(24))


def _resources(
    rng: random.Random, account_id: str, actors: list[ActorSpec]
) -> dict[str, list[tuple[str, str | None]]]:
    """500 resources across the types, consistent with the actors (a user resource is a signed-in person)."""
    people = [(a.id, a.name) for a in actors if a.type == "session"]
    keys = [(a.id, a.name) for a in actors if a.type == "api_key"]
    rules = [(a.id, a.name) for a in actors if a.type == "rule"]
    contacts = [f"reader{i}@example.{rng.choice(['com', 'org', 'net'])}" for i in range(245)]
    return {
        "account": [(account_id, "Bench Co")],
        "activity_log": [(account_id, None)],
        "user": people,
        "api_key": keys,
        "reputation_rule": rules,
        "sending_domain": [(_id(rng, "dom"), f"mail{i}.bench-outfitters.example") for i in range(6)],
        "list": [(_id(rng, "lst"), f"{rng.choice(['VIP', 'Leads', 'Customers'])} {i}") for i in range(20)],
        "segment": [(_id(rng, "seg"), f"Engaged {i}") for i in range(30)],
        "broadcast": [(_id(rng, "brd"), f"{TOPICS[i % len(TOPICS)]} #{i}") for i in range(150)],
        "contact": [(_id(rng, "con"), email) for email in contacts[:180]],
        "address": [(email, email) for email in contacts[180:]],
    }


def make_population(rng: random.Random, account_id: str, tag: str) -> Population:
    actors = _actors(rng, tag)
    rng.shuffle(actors)
    rest = sorted(ALL_ACTIONS - set(COMMON_ACTIONS) - {"account.create"})
    actions = [*COMMON_ACTIONS, *rest][:ACTION_COUNT]
    resources = _resources(rng, account_id, actors)
    for items in resources.values():
        rng.shuffle(items)
    return Population(
        actors=actors,
        actor_cum=_cum(_zipf(len(actors), 1.0)),
        people=[a for a in actors if a.type == "session"],
        actions=actions,
        action_cum=_cum(_zipf(len(actions), 0.9)),
        resources=resources,
        resource_cum={t: _cum(_zipf(len(items), 0.8)) for t, items in resources.items()},
        ip_keys={ip: ip_key(ip) for ip in _ip_pool()},
    )


def _changes(verb: str, name: str | None, rng: random.Random) -> dict[str, Any]:
    """A small, plausible field diff for the verb."""
    if verb == "create":
        return {"name": {"from": None, "to": name}}
    if verb == "delete":
        return {"name": {"from": name, "to": None}}
    if verb == "update":
        field_name = rng.choice(["name", "subject", "status", "first_name"])
        return {field_name: {"from": f"old {rng.randrange(100)}", "to": f"new {rng.randrange(100)}"}}
    if verb in ("send", "pause", "resume", "schedule", "unschedule", "verify"):
        return {"status": {"from": "draft", "to": {"send": "sending", "pause": "paused"}.get(verb, verb)}}
    if verb in ("enable", "disable"):
        return {"enabled": {"from": verb == "disable", "to": verb == "enable"}}
    if verb == "import":
        return {"imported": {"from": None, "to": rng.randint(5, 400)}}
    if verb == "rotate":
        return {"secret_hash": {"from": "[redacted]", "to": "[redacted]"}}
    if verb == "suppress":
        return {"reason": {"from": None, "to": "hard bounce"}}
    return {}


def generate(
    rng: random.Random, account_id: str, pop: Population, head: Head, count: int, end: datetime
) -> Iterator[tuple[Any, ...]]:
    """``count`` chained rows after ``head``, oldest first, spread uniformly up to ``end``."""
    span = int((end - head.occurred_at).total_seconds() * 1_000_000)
    offsets = sorted(rng.randrange(span) for _ in range(count))
    start = head.occurred_at
    for offset in offsets:
        occurred = start + timedelta(microseconds=offset)
        action = rng.choices(pop.actions, cum_weights=pop.action_cum)[0]
        rtype, verb = action.split(".", 1)
        if verb in ("login", "logout", "login_failed"):
            actor = rng.choice(pop.people)
            resource_id, resource_name = actor.id, actor.name
        else:
            actor = rng.choices(pop.actors, cum_weights=pop.actor_cum)[0]
            items = pop.resources[rtype]
            resource_id, resource_name = rng.choices(items, cum_weights=pop.resource_cum[rtype])[0]
        ip = rng.choice(actor.ips) if actor.ips else None
        on_behalf = "session:" + pop.people[0].id if actor.id == "scheduler" else None
        fields = {
            "account_id": account_id,
            "seq": head.seq + 1,
            "occurred_at": format_instant(occurred),
            "actor_type": actor.type,
            "actor_id": actor.id,
            "actor_name": actor.name,
            "on_behalf_of": on_behalf,
            "ip": ip,
            "user_agent": rng.choice(actor.agents) if actor.agents else None,
            "action": action,
            "resource_type": rtype,
            "resource_id": resource_id,
            "resource_name": resource_name,
            "changes": _changes(verb, resource_name, rng),
            "request_id": f"{rng.getrandbits(104):026x}" if actor.ips else None,
        }
        digest = entry_hash(head.hash, fields)
        yield (
            *(fields[c] for c in COLUMNS[:2]),
            occurred,
            *(fields[c] for c in COLUMNS[3:8]),
            pop.ip_keys[ip] if ip else None,
            *(fields[c] for c in COLUMNS[9:14]),
            summarize(action, resource_name),
            canonical_json(fields["changes"]),
            fields["request_id"],
            head.hash,
            digest,
        )
        head.seq, head.hash, head.occurred_at = head.seq + 1, digest, occurred


def _new_account(db: Database, name: str, email: str, start: datetime) -> str:
    return accounts.create_account(
        db,
        name=name,
        owner_email=email,
        password="bench password, not a secret",
        actor=SYSTEM_CLI,
        context=RequestContext(),
        clock=lambda: start,
    ).account.id


def _read_head(store: Store, conn: Any, account_id: str) -> Head:
    seq, digest, at = conn.execute(
        store.sql("SELECT seq, hash, occurred_at FROM activity_heads WHERE account_id = ?"), (account_id,)
    ).fetchone()
    when = store.read_time(at)
    assert when is not None
    return Head(seq, digest, when)


def _insert_sqlite(store: Store, conn: Any, rows: Iterator[tuple[Any, ...]]) -> None:
    sql = f"INSERT INTO activity_entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    while chunk := [(*r[:2], store.bind_time(r[2]), *r[3:]) for r in itertools.islice(rows, SQLITE_CHUNK)]:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, chunk)
        conn.execute("COMMIT")


def _insert_postgres(conn: Any, rows: Iterator[tuple[Any, ...]]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY activity_entries ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    conn.commit()


def _move_heads(store: Store, conn: Any, heads: dict[str, Head]) -> None:
    if store.is_sqlite:
        conn.execute("BEGIN IMMEDIATE")
    for account_id, head in heads.items():
        conn.execute(
            store.sql("UPDATE activity_heads SET seq = ?, hash = ?, occurred_at = ? WHERE account_id = ?"),
            (head.seq, head.hash, store.bind_time(head.occurred_at), account_id),
        )
    if store.is_sqlite:
        conn.execute("COMMIT")
    else:
        conn.commit()


def _settle(store: Store) -> None:
    """PostgreSQL: what autovacuum would soon do anyway (statistics, visibility map), done now so plans are
    the steady state's, not the first minute's. SQLite gets nothing: the application never runs ANALYZE."""
    if store.is_sqlite:
        return
    with psycopg.connect(store.raw_target, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) activity_entries")
        conn.execute("VACUUM (ANALYZE) activity_heads")


def seed(store: Store, *, entries: int, seed_value: int = 20261128) -> Seeded:
    """One account under test with ``entries`` generated rows, and others with as many again between them."""
    began = time.perf_counter()
    rng = random.Random(seed_value)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    start = end - timedelta(days=365)
    db = store.app_db()
    try:
        target = _new_account(
            db, "Bench Co", f"owner-{seed_value}-{rng.getrandbits(32):x}@bench.example", start
        )
        uow = UnitOfWork(
            db, account_id=target, actor=SYSTEM_CLI, context=RequestContext(), clock=lambda: start
        )
        key = api_keys.create_api_key(uow, name="bench reader", scopes=["full"]).secret
        others = [
            _new_account(db, f"Other Co {i}", f"other{i}-{rng.getrandbits(32):x}@bench.example", start)
            for i in range(OTHER_ACCOUNTS)
        ]
    finally:
        db.dispose()
    counts = {target: entries, **{a: max(1, entries // OTHER_ACCOUNTS) for a in others}}
    pops = {a: make_population(rng, a, f"t{i}") for i, a in enumerate(counts)}
    conn = store.raw_connect()
    try:
        heads = {a: _read_head(store, conn, a) for a in counts}
        streams = [generate(rng, a, pops[a], heads[a], n, end) for a, n in counts.items()]
        rows = heapq.merge(*streams, key=lambda r: r[2])  # tenants interleaved in time, as in production
        if store.is_sqlite:
            _insert_sqlite(store, conn, rows)
        else:
            _insert_postgres(conn, rows)
        _move_heads(store, conn, heads)
    finally:
        conn.close()
    _settle(store)
    return Seeded(target, key, pops[target], start, end, counts, time.perf_counter() - began)
