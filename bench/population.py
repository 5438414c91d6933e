"""Who acts on what in each account: 50 actors, a few hundred resources, skewed weights.

Each account has 30 people (sessions), 12 API keys, 5 reputation rules and the 3 system actors. People and
keys act from a handful of addresses in their own network (IPv4 /24s and IPv6 /64s); rules and the system
act with no address. A few actors, actions and resources account for most rows (Zipf weights), as in real
logs. Resource counts shrink with the account's size, so a small account is not 500 names acted on once.

Everything a row needs that does not change per row is pre-encoded here as the JSON text of the chained
object (``*_frag`` strings), so the seeder assembles each entry's canonical JSON by concatenation.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from activitylog.log.actions import RESOURCE_TYPES
from activitylog.log.record import ip_key

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from diffs import TOPICS, ulid_id

IPV4_BLOCKS = ("203.0.113", "198.51.100", "192.0.2", "100.64.10", "100.64.20", "172.16.5", "10.20.30")
IPV6_BLOCKS = ("2001:db8:a", "2001:db8:b", "2001:db8:c", "2001:db8:d")
BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
)
LIST_NAMES = ("VIP", "Leads", "Customers")
CLIENTS = ("python-httpx/0.28", "Zapier/1.0", "curl/8.5.0", "node-fetch/3.3", "HubSpot-Webhooks/2.1")
SYSTEM = (
    ("scheduler", "activitylog scheduler"),
    ("dispatcher", "activitylog dispatcher"),
    ("cli", "activitylog CLI"),
)
# Resources per type in a large account; smaller accounts get fewer (see ``_scaled``).
RESOURCE_COUNTS = {
    "sending_domain": 6,
    "list": 20,
    "segment": 30,
    "broadcast": 150,
    "contact": 180,
    "address": 65,
}


def enc(value: Any) -> str:
    """The value as the canonical JSON writes it."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Address:
    ip: str
    key: str | None  # ip_key(ip)
    json: str


NO_ADDRESS = Address("", None, "null")


@dataclass(frozen=True)
class Actor:
    type: str
    id: str
    name: str | None
    addresses: tuple[Address, ...]
    agents: tuple[tuple[str, str], ...]  # (user agent, its JSON)
    frag: str  # ',"actor_id":…,"actor_name":…,"actor_type":…,"changes":'


@dataclass(frozen=True)
class Resource:
    type: str
    id: str
    name: str | None
    frag: str  # ',"resource_id":…,"resource_name":…,"resource_type":…,"seq":'


@dataclass
class Population:
    account_id: str
    head_frag: str  # '{"account_id":…,"action":'
    actors: list[Actor]
    general: list[Actor]  # who does everyday work: people, API keys, the CLI
    general_cum: list[float]
    people: list[Actor]
    rules: list[Actor]
    scheduler: Actor
    cli: Actor
    resources: dict[str, list[Resource]]
    resource_cum: dict[str, list[float]]
    own_resource: dict[str, Resource]  # a person's own user resource: what sign-ins act on


def cumulative(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def zipf(n: int, s: float) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(n)]


@functools.cache
def _addresses(index: int) -> tuple[Address, ...]:
    """Three addresses per actor, in one network; every fifth actor is on IPv6. Cached, so the same in
    every account (harmless: every query is within one account)."""
    if index % 5 == 4:
        block = IPV6_BLOCKS[index % len(IPV6_BLOCKS)]
        ips = [f"{block}::{index:x}{host:x}" for host in range(1, 4)]
    else:
        block = IPV4_BLOCKS[index % len(IPV4_BLOCKS)]
        ips = [f"{block}.{(index * 3 + host) % 250 + 2}" for host in range(3)]
    return tuple(Address(ip, ip_key(ip), enc(ip)) for ip in ips)


def _actor(kind: str, actor_id: str, name: str | None, index: int, agents: Sequence[str]) -> Actor:
    addresses = _addresses(index) if kind in ("session", "api_key") else ()
    frag = f',"actor_id":{enc(actor_id)},"actor_name":{enc(name)},"actor_type":{enc(kind)},"changes":'
    return Actor(kind, actor_id, name, addresses, tuple((a, enc(a)) for a in agents), frag)


def _actors(rng: random.Random, tag: str) -> list[Actor]:
    out = [
        _actor("session", ulid_id(rng, "usr"), f"user{i}.{tag}@bench.example", i, BROWSERS) for i in range(30)
    ]
    out += [
        _actor("api_key", ulid_id(rng, "key"), f"Integration {i + 1}", 30 + i, CLIENTS) for i in range(12)
    ]
    out += [_actor("rule", ulid_id(rng, "rul"), f"Rule {i}", 0, ()) for i in range(1, 6)]
    out += [_actor("system", sid, name, 0, ()) for sid, name in SYSTEM]
    return out


def _resource(rtype: str, rid: str, name: str | None) -> Resource:
    return Resource(
        rtype,
        rid,
        name,
        f',"resource_id":{enc(rid)},"resource_name":{enc(name)},"resource_type":"{rtype}","seq":',
    )


def _scaled(base: int, entries: int) -> int:
    return max(2, round(base * min(1.0, math.sqrt(entries / 20_000))))


def _resources(
    rng: random.Random, account_id: str, actors: list[Actor], entries: int
) -> dict[str, list[Resource]]:
    n = {t: _scaled(c, entries) for t, c in RESOURCE_COUNTS.items()}
    emails = [
        f"reader{i}@example.{rng.choice(['com', 'org', 'net'])}" for i in range(n["contact"] + n["address"])
    ]
    named: dict[str, list[tuple[str, str | None]]] = {
        "account": [(account_id, "Bench Co")],
        "activity_log": [(account_id, "Activity log")],
        "user": [(a.id, a.name) for a in actors if a.type == "session"],
        "api_key": [(a.id, a.name) for a in actors if a.type == "api_key"],
        "reputation_rule": [(a.id, a.name) for a in actors if a.type == "rule"],
        "sending_domain": [
            (ulid_id(rng, "dom"), f"mail{i}.bench-outfitters.example") for i in range(n["sending_domain"])
        ],
        "list": [(ulid_id(rng, "lst"), f"{rng.choice(LIST_NAMES)} {i}") for i in range(n["list"])],
        "segment": [(ulid_id(rng, "seg"), f"Engaged {i}") for i in range(n["segment"])],
        "broadcast": [
            (ulid_id(rng, "brd"), f"{TOPICS[i % len(TOPICS)]} #{i}") for i in range(n["broadcast"])
        ],
        "contact": [(ulid_id(rng, "con"), email) for email in emails[: n["contact"]]],
        "address": [(email, email) for email in emails[n["contact"] :]],
        "stream": [(ulid_id(rng, "str"), f"SIEM {i}") for i in range(3)],
        "legal_hold": [(ulid_id(rng, "hld"), f"Matter {i}") for i in range(2)],
    }  # fmt: skip
    for rtype in RESOURCE_TYPES:  # the rest of the vocabulary: a few of each
        named.setdefault(rtype, [(ulid_id(rng, rtype[:3]), f"{rtype} {i}") for i in range(3)])
    out = {}
    for rtype, items in named.items():
        rng.shuffle(items)
        out[rtype] = [_resource(rtype, rid, name) for rid, name in items]
    return out


def make_population(rng: random.Random, account_id: str, tag: str, entries: int) -> Population:
    """One account's cast, sized for about ``entries`` entries."""
    actors = _actors(rng, tag)
    general = [a for a in actors if a.type in ("session", "api_key") or a.id == "cli"]
    rng.shuffle(general)
    resources = _resources(rng, account_id, actors, entries)
    return Population(
        account_id=account_id,
        head_frag=f'{{"account_id":{enc(account_id)},"action":',
        actors=actors,
        general=general,
        general_cum=cumulative(zipf(len(general), 1.0)),
        people=[a for a in actors if a.type == "session"],
        rules=[a for a in actors if a.type == "rule"],
        scheduler=next(a for a in actors if a.id == "scheduler"),
        cli=next(a for a in actors if a.id == "cli"),
        resources=resources,
        resource_cum={t: cumulative(zipf(len(items), 0.8)) for t, items in resources.items()},
        own_resource={r.id: r for r in resources["user"]},
    )
