"""The filters of ``GET /api/v1/activity``, proven against a brute-force reference.

One tenant's log is built once per engine through the real REST API (several sessions and API keys, varied
source IPs, every kind of account action). The whole log is then read back page by page, and every filter of
the contract, alone and in random combinations (hypothesis), is compared with a plain Python filter over that
full set. The reference below is written from the contract (API.md, "Reading the log"), not from the code.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from activitylog.log import query
from activitylog.web.schemas import EntryOut, Page
from conftest import PASSWORD, Server, Tenant, make_tenant

# ---- the contract's vocabulary (API.md), independent of the product's own tables ----
VERBS = [
    "create",
    "update",
    "delete",
    "schedule",
    "unschedule",
    "send",
    "pause",
    "resume",
    "suppress",
    "unsuppress",
    "enable",
    "disable",
    "revoke",
    "rotate",
    "verify",
    "import",
    "export",
    "login",
    "logout",
    "login_failed",
]
RESOURCE_TYPES = [
    "account",
    "user",
    "api_key",
    "list",
    "contact",
    "segment",
    "broadcast",
    "address",
    "sending_domain",
    "reputation_rule",
    "activity_log",
]
ACTOR_TYPES = ("session", "api_key", "rule", "system")
FILTERS = ("actor", "actor_type", "action", "resource_type", "resource_id", "ip", "since", "until", "q")

# Source addresses sent as X-Forwarded-For (trusted from 127.0.0.1 in the test server); None = no header.
IPS_V4 = ("203.0.113.4", "203.0.113.7", "203.0.113.77", "203.0.113.200", "198.51.100.1", "198.51.100.130")
IPS_V6 = ("2001:db8::1", "2001:db8::2:1", "2001:db8:0:1::5")
SOURCES: tuple[str | None, ...] = (*IPS_V4, *IPS_V6, None)

# Names with LIKE metacharacters, each with a twin that a wildcard (un-escaped) `%`/`_`/`\` would also match.
LIST_NAMES = (
    "VIP_Customers",
    "VIPxCustomers",
    "Spring 50% off",
    "Spring 50 percent off",
    "Back\\slash list",
    "Backslash list",
    "MiXeD CaSe Weekly",
    "Café ÉTÉ Ölmühle",  # case folding beyond ASCII
)
PAGE = 7


# ---- the reference ----
def parse_instant(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.strip())
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def action_matches(action: str, token: str) -> bool:
    rtype, verb = action.split(".", 1)
    if token.endswith(".*"):
        return rtype == token[:-2]
    if "." in token:
        return action == token
    return verb == token


IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def ip_matches(ip: str | None, token: str) -> bool:
    """An IPv4-mapped address or block (``::ffff:a.b.c.d``) means the IPv4 addresses it carries: the
    recorder stores the address a dual-stack socket reports in that form as IPv4."""
    if ip is None:
        return False
    net = ipaddress.ip_network(token, strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(IPV4_MAPPED):
        carried = net.network_address.ipv4_mapped
        assert carried is not None
        if ipaddress.ip_address(ip) in ipaddress.IPv4Network((carried, net.prefixlen - 96)):
            return True
    return ipaddress.ip_address(ip) in net


def listed_resources(entry: dict[str, Any]) -> list[tuple[str, str]]:
    """The other resources a bulk entry changed, as its changes list them (``contact_ids``: …)."""
    out = []
    for rtype in RESOURCE_TYPES:
        diff = entry["changes"].get(f"{rtype}_ids")
        if isinstance(diff, dict):
            out += [(rtype, i) for side in ("from", "to") for i in (diff.get(side) or [])]
    return out


def reference(entries: list[dict[str, Any]], params: dict[str, str]) -> list[dict[str, Any]]:
    """The contract's filters over the full set: AND across parameters, comma = OR inside one."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    if v := params.get("actor"):
        ids = set(tokens(v))
        checks.append(lambda e: e["actor"]["id"] in ids)
    if v := params.get("actor_type"):
        types = set(tokens(v))
        checks.append(lambda e: e["actor"]["type"] in types)
    if v := params.get("action"):
        acts = tokens(v)
        checks.append(lambda e: any(action_matches(e["action"], t) for t in acts))
    rtypes = set(tokens(params.get("resource_type", "")))
    if v := params.get("resource_id"):
        # The target is the entry's own resource or one a bulk entry lists under "<type>_ids" (counts plus
        # affected ids); a resource_type narrows either to that type.
        rids = set(tokens(v))
        checks.append(
            lambda e: any(
                rid in rids and (not rtypes or rtype in rtypes)
                for rtype, rid in [(e["resource"]["type"], e["resource"]["id"]), *listed_resources(e)]
            )
        )
    elif rtypes:
        checks.append(lambda e: e["resource"]["type"] in rtypes)
    if v := params.get("ip"):
        nets = tokens(v)
        checks.append(lambda e: any(ip_matches(e["ip"], t) for t in nets))
    if v := params.get("since"):
        start = parse_instant(v)
        checks.append(lambda e: parse_instant(e["occurred_at"]) >= start)
    if v := params.get("until"):
        end = parse_instant(v)
        checks.append(lambda e: parse_instant(e["occurred_at"]) < end)
    if (v := params.get("q")) and v.strip():
        needle = v.strip().lower()
        checks.append(
            lambda e: any(
                needle in (text or "").lower()
                for text in (e["summary"], e["resource"]["name"], e["actor"]["name"])
            )
        )
    return [e for e in entries if all(check(e) for check in checks)]


def fetch_all(client: httpx.Client, params: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """Every entry of a filtered slice, following ``next_cursor``; checks the pages as it goes."""
    out: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(10_000):
        query = {**params, "limit": str(limit), **({"cursor": cursor} if cursor else {})}
        r = client.get("/api/v1/activity", params=query)
        assert r.status_code == 200, (query, r.text)
        body = r.json()
        assert set(body) == {"data", "next_cursor"}
        page, cursor = body["data"], body["next_cursor"]
        assert len(page) <= limit
        if cursor is not None:
            assert len(page) == limit, "a page before the last one is full"
        else:
            assert page or not out, "no empty trailing page"
        if out and page:
            assert page[0]["seq"] < out[-1]["seq"], "a page starts after the previous one ended"
        out.extend(page)
        if cursor is None:
            break
    else:  # pragma: no cover
        raise AssertionError("pagination does not end")
    seqs = [e["seq"] for e in out]
    assert len(seqs) == len(set(seqs)), "no entry twice"
    assert all(a > b for a, b in itertools.pairwise(seqs)), "newest first, strictly"
    return out


def seqs_of(entries: list[dict[str, Any]]) -> list[int]:
    return [e["seq"] for e in entries]


# ---- building the history ----
class Actor:
    """One caller (a session or an API key) whose requests come from varied source addresses."""

    def __init__(self, client: httpx.Client, rng: random.Random) -> None:
        self.client = client
        self.rng = rng

    def __call__(self, method: str, url: str, expect: int = 200, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        ip = self.rng.choice(SOURCES)
        if ip is not None:
            headers["X-Forwarded-For"] = ip
        r = self.client.request(method, url, headers=headers, **kwargs)
        assert r.status_code == expect, (method, url, r.status_code, r.text)
        return r.json() if r.content else None


@dataclass
class Dataset:
    tenant: Tenant
    entries: list[dict[str, Any]]  # the whole log, newest first
    ids: dict[str, str] = field(default_factory=dict)

    def values(self, pick: Callable[[dict[str, Any]], Any]) -> list[Any]:
        return sorted({v for e in self.entries if (v := pick(e)) is not None}, key=str)

    @property
    def instants(self) -> list[datetime]:
        return sorted({parse_instant(e["occurred_at"]) for e in self.entries})


def sign_in(server: Server, email: str, password: str, ip: str, agent: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, headers={"User-Agent": agent}, timeout=30)
    r = client.post(
        "/api/v1/session", json={"email": email, "password": password}, headers={"X-Forwarded-For": ip}
    )
    assert r.status_code == 200, r.text
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return client


def one_round(i: int, pick: Callable[[], Actor], rng: random.Random) -> None:
    """About 35 entries: every kind of account action, each by a randomly chosen actor."""
    lst = pick()("POST", "/api/v1/lists", 201, json={"name": f"{LIST_NAMES[i % len(LIST_NAMES)]} {i}"})
    contacts = [
        pick()(
            "POST",
            f"/api/v1/lists/{lst['id']}/contacts",
            201,
            json={"email": f"Person{i}.{j}@Example.com", "first_name": rng.choice(["Ann", "Bob", "Zoë"])},
        )
        for j in range(3)
    ]
    pick()("PATCH", f"/api/v1/contacts/{contacts[0]['id']}", json={"first_name": "Renamed"})
    pick()("PATCH", f"/api/v1/contacts/{contacts[1]['id']}", json={"status": "unsubscribed"})
    pick()("DELETE", f"/api/v1/contacts/{contacts[2]['id']}", 204)
    csv_body = f"email,first_name\nimport{i}a@example.com,Ann\nimport{i}b@example.com,Bob\n"
    pick()(
        "POST",
        f"/api/v1/lists/{lst['id']}/contacts/import",
        content=csv_body.encode(),
        headers={"Content-Type": "text/csv"},
    )
    seg = pick()(
        "POST",
        "/api/v1/segments",
        201,
        json={
            "name": f"Engaged {i}",
            "list_id": lst["id"],
            "conditions": [{"field": "email", "op": "ends_with", "value": "@example.com"}],
        },
    )
    pick()("PATCH", f"/api/v1/segments/{seg['id']}", json={"name": f"Engaged_{i} (30d)"})
    brd = pick()(
        "POST",
        "/api/v1/broadcasts",
        201,
        json={
            "name": f"Spring Picks #{i}",
            "subject": "Fresh picks",
            "from_email": "news@example.com",
            "list_id": lst["id"],
        },
    )
    base = f"/api/v1/broadcasts/{brd['id']}"
    pick()("PATCH", base, json={"subject": f"Fresh picks, part {i}"})
    pick()("POST", f"{base}/schedule", json={"send_at": f"2099-01-0{1 + i % 9}T09:00:00Z"})
    pick()("POST", f"{base}/unschedule")
    pick()("POST", f"{base}/schedule", json={"send_at": "2099-02-01T09:00:00+02:00"})
    pick()("POST", f"{base}/send")
    pick()("POST", f"{base}/pause")
    pick()("POST", f"{base}/resume")
    pick()("POST", f"{base}/pause")
    pick()("DELETE", base, 204)
    to_segment = pick()(
        "POST",
        "/api/v1/broadcasts",
        201,
        json={
            "name": f"Segment blast {i}",
            "subject": "Hi",
            "from_email": "a@example.com",
            "segment_id": seg["id"],
        },
    )
    pick()("DELETE", f"/api/v1/broadcasts/{to_segment['id']}", 204)
    pick()("DELETE", f"/api/v1/segments/{seg['id']}", 204)
    address = f"Blocked{i}@Example.COM"
    pick()("POST", "/api/v1/suppressions", 201, json={"email": address, "reason": "complained"})
    if i % 2:
        pick()("DELETE", f"/api/v1/suppressions/{address.lower()}", 204)
    dom = pick()("POST", "/api/v1/sending-domains", 201, json={"domain": f"Mail{i}.Example.com"})
    pick()("PATCH", f"/api/v1/sending-domains/{dom['id']}", json={"dkim_selector": f"sel{i}"})
    pick()("POST", f"/api/v1/sending-domains/{dom['id']}/verify")
    if i % 2 == 0:
        pick()("DELETE", f"/api/v1/sending-domains/{dom['id']}", 204)
    condition: dict[str, Any] = (
        {"event": "complaint"}
        if i % 2
        else {"metric": "bounce_rate", "threshold": 0.05, "window_minutes": 60, "min_sends": 100}
    )
    rule = pick()(
        "POST",
        "/api/v1/reputation-rules",
        201,
        json={"name": f"Guard {i}", "condition": condition, "action": {"type": "pause_sending"}},
    )
    pick()("POST", f"/api/v1/reputation-rules/{rule['id']}/disable")
    pick()("POST", f"/api/v1/reputation-rules/{rule['id']}/enable")
    pick()("PATCH", f"/api/v1/reputation-rules/{rule['id']}", json={"name": f"Guard {i} (strict)"})
    if i % 2:
        pick()("DELETE", f"/api/v1/reputation-rules/{rule['id']}", 204)
    pick()(
        "PATCH", f"/api/v1/lists/{lst['id']}", json={"name": f"{LIST_NAMES[(i + 3) % len(LIST_NAMES)]} {i}b"}
    )
    if i % 3 == 0:
        pick()("DELETE", f"/api/v1/lists/{lst['id']}", 204)


def build_history(server: Server) -> Dataset:
    rng = random.Random(20260314)
    tenant = make_tenant(server, name="Query Co")
    owner = tenant.session_client()  # signs in from 127.0.0.1 (no X-Forwarded-For)
    as_owner = Actor(owner, rng)
    admin_email = f"Admin-{uuid.uuid4().hex[:8]}@Example.com"
    as_owner("POST", "/api/v1/users", 201, json={"email": admin_email, "password": PASSWORD, "role": "admin"})
    admin = sign_in(server, admin_email, PASSWORD, "198.51.100.9", "tests-admin/2.0")
    keys = {
        name: as_owner("POST", "/api/v1/api-keys", 201, json={"name": name, "scopes": scopes})
        for name, scopes in (
            ("Zapier sync", ["full"]),
            ("CRM_import 100%", ["write", "activity:read"]),
            ("Backup\\Job", ["write"]),
        )
    }
    callers = [as_owner, Actor(admin, rng), Actor(tenant.key_client(), rng)]
    callers += [Actor(tenant.key_client(k["key"]), rng) for k in keys.values()]

    for i in range(6):
        one_round(i, lambda: rng.choice(callers), rng)

    # Bookkeeping by the owner: account, users, keys, and the sign-in events.
    as_owner("PATCH", "/api/v1/account", json={"name": "Query Co (renamed)"})
    member = as_owner(
        "POST",
        "/api/v1/users",
        201,
        json={"email": f"member-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD, "role": "member"},
    )
    as_owner("PATCH", f"/api/v1/users/{member['id']}", json={"role": "admin"})
    as_owner("DELETE", f"/api/v1/users/{member['id']}", 204)
    backup, crm = keys["Backup\\Job"]["id"], keys["CRM_import 100%"]["id"]
    as_owner("POST", f"/api/v1/api-keys/{backup}/rotate")
    as_owner("POST", f"/api/v1/api-keys/{crm}/revoke")
    failed = httpx.post(
        f"{server.url}/api/v1/session",
        json={"email": admin_email, "password": "not the password"},
        headers={"X-Forwarded-For": "2001:db8::dead", "User-Agent": "curl/8"},
    )
    assert failed.status_code == 401
    r = admin.delete("/api/v1/session", headers={"X-Forwarded-For": "198.51.100.9"})
    assert r.status_code == 204, r.text
    for client in (owner, admin, *(c.client for c in callers)):
        client.close()

    with tenant.key_client() as reader:
        entries = fetch_all(reader, {}, PAGE)
    ids = {"admin_email": admin_email.lower(), **{name: k["id"] for name, k in keys.items()}}
    return Dataset(tenant=tenant, entries=entries, ids=ids)


@pytest.fixture(scope="module")
def data(server: Server) -> Dataset:
    return build_history(server)


@pytest.fixture(scope="module")
def reader(data: Dataset) -> Iterator[httpx.Client]:
    with data.tenant.key_client() as client:
        yield client


def check(
    reader: httpx.Client, data: Dataset, params: dict[str, str], limit: int = 1000
) -> list[dict[str, Any]]:
    got = fetch_all(reader, params, limit)
    want = reference(data.entries, params)
    assert seqs_of(got) == seqs_of(want), params
    assert got == want, params  # the same entries, field for field
    return got


# ---- the full set and pagination ----
def test_the_history_is_varied_and_pages_cover_it_exactly(data: Dataset, reader: httpx.Client) -> None:
    entries = data.entries
    assert 150 <= len(entries) <= 320, len(entries)
    assert seqs_of(entries) == list(range(len(entries), 0, -1)), "seq starts at 1 and is gapless"
    assert {e["account_id"] for e in entries} == {data.tenant.account_id}
    instants = [parse_instant(e["occurred_at"]) for e in reversed(entries)]
    assert instants == sorted(instants), "occurred_at never decreases along seq"
    # Varied enough to make the filters mean something.
    assert set(data.values(lambda e: e["actor"]["type"])) == {"session", "api_key", "system"}
    assert len(data.values(lambda e: e["actor"]["id"])) >= 7
    assert set(data.values(lambda e: e["ip"])) >= {*IPS_V4, *IPS_V6, "127.0.0.1"}
    assert len(data.values(lambda e: e["action"])) >= 30
    assert set(data.values(lambda e: e["resource"]["type"])) >= set(RESOURCE_TYPES) - {"activity_log"}
    # Any page size gives the same whole.
    for limit in (1, 2, PAGE, 50, 1000):
        assert fetch_all(reader, {}, limit) == entries
    # The default page is 50, newest first.
    first = reader.get("/api/v1/activity").json()
    assert first["data"] == entries[:50] and first["next_cursor"] is not None


def test_a_cursor_continues_a_filtered_slice(data: Dataset, reader: httpx.Client) -> None:
    params = {"action": "broadcast.*", "ip": "203.0.113.0/24"}
    want = reference(data.entries, params)
    assert len(want) > 3
    first = reader.get("/api/v1/activity", params={**params, "limit": "3"}).json()
    assert seqs_of(first["data"]) == seqs_of(want[:3])
    rest = reader.get("/api/v1/activity", params={**params, "limit": "1000", "cursor": first["next_cursor"]})
    assert seqs_of(rest.json()["data"]) == seqs_of(want[3:])


# ---- each filter alone, over every value that occurs ----
def test_actor(data: Dataset, reader: httpx.Client) -> None:
    actors = data.values(lambda e: e["actor"]["id"])
    for actor in [*actors, "scheduler", "usr_nobody"]:
        got = check(reader, data, {"actor": actor})
        assert bool(got) == (actor in actors)
    check(reader, data, {"actor": f"{data.ids['Zapier sync']}, {data.ids['CRM_import 100%']}"})
    check(reader, data, {"actor": ",".join(actors)})


def test_actor_type(data: Dataset, reader: httpx.Client) -> None:
    for actor_type in ACTOR_TYPES:
        check(reader, data, {"actor_type": actor_type})
    assert check(reader, data, {"actor_type": "session,api_key,system"})
    assert check(reader, data, {"actor_type": "rule"}) == []


def test_action_full_verb_and_wildcard(data: Dataset, reader: httpx.Client) -> None:
    occurring = data.values(lambda e: e["action"])
    for action in occurring:
        assert check(reader, data, {"action": action})
    for verb in VERBS:
        check(reader, data, {"action": verb})
    for rtype in RESOURCE_TYPES:
        check(reader, data, {"action": f"{rtype}.*"})
    assert check(reader, data, {"action": "activity_log.export"}) == []
    check(reader, data, {"action": "broadcast.send,pause"})
    check(reader, data, {"action": "address.*, sending_domain.verify ,login_failed"})
    check(reader, data, {"action": "create,delete,list.*"})


def test_resource_type_and_id(data: Dataset, reader: httpx.Client) -> None:
    for rtype in RESOURCE_TYPES:
        check(reader, data, {"resource_type": rtype})
    check(reader, data, {"resource_type": "broadcast,segment"})
    rids = data.values(lambda e: e["resource"]["id"])
    for rid in rids:
        assert check(reader, data, {"resource_id": rid})
    assert check(reader, data, {"resource_id": "lst_nothing"}) == []
    check(reader, data, {"resource_id": ",".join(rids[:5])})
    # The suppression list is keyed by the lower-cased address.
    suppressed = [e for e in data.entries if e["resource"]["type"] == "address"]
    assert suppressed and all(e["resource"]["id"] == e["resource"]["id"].lower() for e in suppressed)


def test_ip_address_and_cidr(data: Dataset, reader: httpx.Client) -> None:
    for ip in data.values(lambda e: e["ip"]):
        assert check(reader, data, {"ip": ip})
    for block in (
        "203.0.113.0/24",
        "203.0.113.0/26",  # .4 and .7, not .77 or .200
        "203.0.113.64/26",
        "198.51.100.0/25",
        "198.51.100.128/25",
        "0.0.0.0/0",
        "127.0.0.0/8",
        "10.0.0.0/8",
        "2001:db8::/32",
        "2001:db8::/64",
        "2001:db8:0:1::/64",
        "2001:db8::2:0/112",
        "2001:db8::1/128",
        "203.0.113.77/32",
        "203.0.113.5/24",  # host bits set: the block it lies in
    ):
        check(reader, data, {"ip": block})
    assert check(reader, data, {"ip": "203.0.113.0/26"})
    assert check(reader, data, {"ip": "10.0.0.0/8"}) == []
    check(reader, data, {"ip": "198.51.100.0/24,2001:db8::/32"})
    check(reader, data, {"ip": "203.0.113.7, 2001:db8::1"})
    # An IPv4 address or block written IPv4-mapped finds what its IPv4 spelling finds.
    for ip in data.values(lambda e: e["ip"] if e["ip"] and "." in e["ip"] else None):
        assert check(reader, data, {"ip": f"::ffff:{ip}"}) == check(reader, data, {"ip": ip})
    assert check(reader, data, {"ip": "::ffff:203.0.113.0/122"}) == check(
        reader, data, {"ip": "203.0.113.0/26"}
    )
    assert check(reader, data, {"ip": "::ffff:cb00:7104"})  # 203.0.113.4, in hex
    # The address an IPv6 entry shows is canonical, and filtering by a non-canonical spelling finds it.
    assert check(reader, data, {"ip": "2001:0db8:0000:0000:0000:0000:0000:0001"})


def test_an_ip_block_matches_only_its_own_family(data: Dataset, reader: httpx.Client) -> None:
    v6 = [e for e in data.entries if e["ip"] and ":" in e["ip"]]
    v4 = [e for e in data.entries if e["ip"] and "." in e["ip"]]
    assert check(reader, data, {"ip": "::/0"}) == v6
    # IPv4-mapped space is the IPv4 addresses it carries, as the recorder stores them; ::/0 is IPv6 only.
    assert check(reader, data, {"ip": "::ffff:0:0/96"}) == v4
    assert check(reader, data, {"ip": "0.0.0.0/0"}) == v4
    assert check(reader, data, {"ip": "0.0.0.0/0,::/0"}) == [e for e in data.entries if e["ip"]]


def instant_forms(instant: datetime) -> dict[str, str]:
    """One instant written the ways the contract accepts: Z, offsets, naive (= UTC)."""
    return {
        "Z": instant.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "+05:30": instant.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        "-03:00": instant.astimezone(timezone(timedelta(hours=-3))).isoformat(),
        "naive": instant.replace(tzinfo=None).isoformat(),
        "naive-space": instant.replace(tzinfo=None).isoformat(sep=" "),
    }


def test_since_and_until_bounds_in_every_form(data: Dataset, reader: httpx.Client) -> None:
    instants = data.instants
    picked = [instants[0], instants[len(instants) // 3], instants[len(instants) // 2], instants[-1]]
    for instant in picked:
        at = [e for e in data.entries if parse_instant(e["occurred_at"]) == instant]
        for form, text in instant_forms(instant).items():
            since = check(reader, data, {"since": text})
            until = check(reader, data, {"until": text})
            assert all(e in since for e in at), f"since is inclusive ({form})"
            assert not any(e in until for e in at), f"until is exclusive ({form})"
            assert len(since) + len(until) == len(data.entries)
            for nudge in (timedelta(microseconds=1), -timedelta(microseconds=1)):
                check(reader, data, {"since": instant_forms(instant + nudge)[form]})
                check(reader, data, {"until": instant_forms(instant + nudge)[form]})
    # A window, both ends, and an empty window.
    lo, hi = instants[len(instants) // 4], instants[3 * len(instants) // 4]
    assert check(reader, data, {"since": instant_forms(lo)["-03:00"], "until": instant_forms(hi)["+05:30"]})
    assert check(reader, data, {"since": instant_forms(lo)["Z"], "until": instant_forms(lo)["Z"]}) == []
    # Coarser forms: seconds only, a date only, far past and far future.
    check(reader, data, {"since": instants[len(instants) // 2].replace(microsecond=0).isoformat()})
    assert check(reader, data, {"since": "2000-01-01"}) == data.entries
    assert check(reader, data, {"since": "2999-01-01T00:00:00Z"}) == []
    assert check(reader, data, {"until": "2000-01-01T00:00:00+14:00"}) == []


def test_q_is_case_insensitive_text_in_summary_resource_name_or_actor_name(
    data: Dataset, reader: httpx.Client
) -> None:
    for q in (
        "vip",
        "ViP_cUsToMeRs",
        "spring picks",
        "ZAPIER",  # an actor name only
        "example.com",
        "@example.com",
        "mail3.example",  # a sending domain (resource name)
        "Signed in",
        "failed sign-in",
        "guard 2 (strict)",
        "  engaged_1 (30d)  ",  # surrounding space is not part of the text
        "Deleted contact",
        "été ölmühle",
        "CAFÉ",
        "nothing like this anywhere",
    ):
        check(reader, data, {"q": q})
    assert check(reader, data, {"q": "été ÖLMÜHLE"}), "case folds beyond ASCII too"
    # Whitespace-only q searches for nothing: refused, not silently dropped (issue 14, item 9).
    blank = reader.get("/api/v1/activity", params={"q": "   "})
    assert blank.status_code == 422 and blank.json()["error"]["field"] == "q", blank.text


@pytest.mark.parametrize(
    ("q", "must_not_match"),
    [
        ("%", "VIPxCustomers"),
        ("50%", "Spring 50 percent off"),
        ("0% o", "Spring 50 percent off"),
        ("_", "Spring 50 percent off"),
        ("p_c", "VIPxCustomers"),
        ("k\\s", "Backslash list"),
        ("\\", "Backslash list"),
        ("100%", "Zapier sync"),
        ("d_1", "Engaged 1"),
    ],
)
def test_q_treats_like_metacharacters_literally(
    data: Dataset, reader: httpx.Client, q: str, must_not_match: str
) -> None:
    def texts(e: dict[str, Any]) -> tuple[str, ...]:
        return (e["summary"], e["resource"]["name"] or "", e["actor"]["name"] or "")

    # The trap exists: a text that q would match if its metacharacter were a wildcard.
    assert any(must_not_match in t for e in data.entries for t in texts(e))
    got = check(reader, data, {"q": q})
    assert got
    assert all(any(q.lower() in t.lower() for t in texts(e)) for e in got)


# ---- random combinations (hypothesis) ----
# hypothesis's draw, from @st.composite or st.data() alike
Draw = Callable[..., Any]


def instant_text(draw: Draw, data: Dataset) -> str:
    instant = draw(st.sampled_from(data.instants))
    instant += timedelta(microseconds=draw(st.sampled_from([0, 0, 1, -1, 1500, -250_000])))
    return instant_forms(instant)[draw(st.sampled_from(["Z", "+05:30", "-03:00", "naive", "naive-space"]))]


def cidr_for_prefix(ip: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) around an address."""
    address = ipaddress.ip_address(ip)
    return str(ipaddress.ip_network(f"{address}/{24 if address.version == 4 else 64}", strict=False))


def cidr_for(draw: Draw, ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        prefix = draw(st.sampled_from([0, 8, 16, 24, 25, 26, 30, 32]))
    else:
        prefix = draw(st.sampled_from([0, 1, 16, 32, 48, 64, 96, 112, 126, 128]))
    net = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return str(net) if draw(st.booleans()) else f"{address}/{prefix}"


def q_text(draw: Draw, data: Dataset) -> str:
    sources = data.values(lambda e: e["summary"]) + data.values(lambda e: e["actor"]["name"])
    source = draw(st.sampled_from(sources))
    start = draw(st.integers(0, max(0, len(source) - 1)))
    text = source[start : start + draw(st.integers(1, 10))]
    text = "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)
    return draw(st.sampled_from(["", " "])) + text if text.strip() else "x"


def draw_params(draw: Draw, data: Dataset) -> dict[str, str]:
    def some(values: list[str], joiner: str = ",") -> str:
        picked = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True))
        return joiner.join(picked)

    actions = data.values(lambda e: e["action"])
    makers: dict[str, Callable[[], str]] = {
        "actor": lambda: some([*data.values(lambda e: e["actor"]["id"]), "scheduler"]),
        "actor_type": lambda: some(list(ACTOR_TYPES)),
        "action": lambda: some(
            [*actions, *VERBS, *(f"{t}.*" for t in RESOURCE_TYPES)], draw(st.sampled_from([",", ", "]))
        ),
        "resource_type": lambda: some(list(RESOURCE_TYPES)),
        "resource_id": lambda: some(data.values(lambda e: e["resource"]["id"])),
        "ip": lambda: ",".join(
            ip if draw(st.booleans()) else cidr_for(draw, ip)
            for ip in draw(
                st.lists(
                    st.sampled_from([*data.values(lambda e: e["ip"])]), min_size=1, max_size=2, unique=True
                )
            )
        ),
        "since": lambda: instant_text(draw, data),
        "until": lambda: instant_text(draw, data),
        "q": lambda: q_text(draw, data),
    }
    chosen = draw(st.lists(st.sampled_from(FILTERS), min_size=1, max_size=4, unique=True))
    params = {name: makers[name]() for name in chosen}
    if (
        "since" in params
        and "until" in params
        and parse_instant(params["since"]) > parse_instant(params["until"])
    ):
        params["since"], params["until"] = params["until"], params["since"]
    return params


@settings(max_examples=40, deadline=None)
@given(hyp=st.data())
def test_random_filter_combinations_match_the_reference(
    data: Dataset, reader: httpx.Client, hyp: st.DataObject
) -> None:
    params = draw_params(hyp.draw, data)
    limit = hyp.draw(st.sampled_from([1, 3, PAGE, 1000]), label="limit")
    got = fetch_all(reader, params, limit)
    want = reference(data.entries, params)
    assert seqs_of(got) == seqs_of(want), params
    assert got == want


@pytest.mark.parametrize("window", [3, 60])
def test_searches_split_into_a_recent_scan_and_the_index_miss_nothing(
    data: Dataset, reader: httpx.Client, monkeypatch: pytest.MonkeyPatch, window: int
) -> None:
    """Text and IP-range searches read the newest RECENT_SCAN_WINDOW entries in order, then ask their index
    for the older ones; shrunk to a few entries, page boundaries fall on both sides of the split."""
    monkeypatch.setattr(query, "RECENT_SCAN_WINDOW", window)
    for q in ("vip", "example.com", "Signed in", "Deleted contact", "ZAPIER", "nothing like this anywhere"):
        for limit in (1, 3, PAGE):
            got = fetch_all(reader, {"q": q}, limit)
            assert seqs_of(got) == seqs_of(reference(data.entries, {"q": q})), (q, limit)
    first = data.entries[len(data.entries) // 3]["occurred_at"]
    check(reader, data, {"q": "list", "since": first})
    check(reader, data, {"q": "in", "action": "user.*"}, limit=2)
    for ip in sorted({e["ip"] for e in data.entries if e["ip"]})[:6]:
        for params in ({"ip": ip}, {"ip": cidr_for_prefix(ip)}, {"ip": cidr_for_prefix(ip), "q": "e"}):
            for limit in (1, PAGE):
                assert seqs_of(fetch_all(reader, params, limit)) == seqs_of(reference(data.entries, params))


def test_a_page_is_exactly_what_its_response_model_gives(data: Dataset, reader: httpx.Client) -> None:
    """The page is serialized by the route itself; its bytes must be those of the declared model."""
    model = TypeAdapter(Page[EntryOut])
    for params in ({}, {"limit": "1000"}, {"action": "update"}):
        r = reader.get("/api/v1/activity", params=params)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        # fields a v1 entry does not have (chain_version, salts, erased) are left out, not null
        assert model.dump_json(model.validate_json(r.content), exclude_unset=True) == r.content


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_prebuilt_page_statements_are_the_sql_page_statement_builds(dialect: str) -> None:
    """Every combination of value filters, time window and cursor: the template with its parameters renders
    to exactly the statement built for the request."""
    engine_dialect = {"sqlite": sqlite_dialect, "postgresql": postgresql_dialect}[dialect].dialect()

    def render(statement: Any) -> str:
        return str(statement.compile(dialect=engine_dialect, compile_kwargs={"literal_binds": True}))

    names = ["actor", "actor_type", "actions", "resource_type", "resource_id"]
    for chosen in itertools.product([False, True], repeat=len(names) + 2):
        values: dict[str, Any] = {name: ("a'1", "b") for name, on in zip(names, chosen, strict=False) if on}
        f = query.ActivityFilter(**values, seq_window=(3, 90) if chosen[-2] else None)
        before = 77 if chosen[-1] else None
        built = query.page_statement("acc_1", f, dialect=dialect, before_seq=before, limit=50)
        template, params = query._page_query("acc_1", f, dialect=dialect, before_seq=before, limit=50)
        assert params, "a template, not a statement built for the request"
        assert render(template.params(params)) == render(built), chosen


# ---- one entry, and other tenants ----
def test_one_entry_is_the_same_as_in_the_list(data: Dataset, reader: httpx.Client) -> None:
    for entry in data.entries:
        r = reader.get(f"/api/v1/activity/{entry['seq']}")
        assert r.status_code == 200, r.text
        assert r.json() == entry
    for seq in (len(data.entries) + 1, 0, -1, 2**62):
        r = reader.get(f"/api/v1/activity/{seq}")
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "not_found"


def test_another_tenant_sees_none_of_these_entries(server: Server, data: Dataset) -> None:
    other = make_tenant(server, name="Someone else")
    ours = {e["hash"] for e in data.entries}
    with other.key_client() as client:
        theirs = fetch_all(client, {}, PAGE)
        assert theirs and all(e["account_id"] == other.account_id for e in theirs)
        assert not ours & {e["hash"] for e in theirs}
        for params in (
            {"actor": data.ids["Zapier sync"]},
            {"actor": ",".join(set(data.values(lambda e: e["actor"]["id"])) - {"cli"})},  # cli is everyone's
            {"resource_id": ",".join(data.values(lambda e: e["resource"]["id"])[:50])},
            {"q": "Spring Picks"},
            {"ip": "203.0.113.0/24"},
            {"action": "broadcast.*"},
        ):
            assert fetch_all(client, params, PAGE) == [], params
        for entry in data.entries:
            r = client.get(f"/api/v1/activity/{entry['seq']}")
            if entry["seq"] > len(theirs):
                assert r.status_code == 404, r.text
            else:  # the same number names the other tenant's own entry, never ours
                assert r.status_code == 200 and r.json()["account_id"] == other.account_id
                assert r.json()["hash"] not in ours
        # A cursor from our slice does not open our entries to them either.
        cursor = base64.urlsafe_b64encode(json.dumps({"seq": len(data.entries) + 1}).encode()).decode()
        r = client.get("/api/v1/activity", params={"cursor": cursor.rstrip("="), "limit": "1000"})
        assert r.status_code == 200 and r.json()["data"] == theirs
    session = other.session_client()  # already open: it has signed in
    try:
        assert fetch_all(session, {"actor": data.ids["Zapier sync"]}, PAGE) == []
        assert session.get(f"/api/v1/activity/{len(data.entries)}").status_code == 404
    finally:
        session.close()


def test_q_is_case_insensitive_beyond_ascii(server: Server) -> None:
    tenant = make_tenant(server, name="Unicode")
    with tenant.key_client() as client:
        assert client.post("/api/v1/lists", json={"name": "Café ÉTÉ Ölmühle"}).status_code == 201
        for q in ("été", "ÉTÉ", "café été", "ÖLMÜHLE", "ölmühle"):
            got = client.get("/api/v1/activity", params={"q": q}).json()["data"]
            assert [e["action"] for e in got] == ["list.create"], q
