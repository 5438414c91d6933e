"""Field diffs shaped like the recorder's, as canonical JSON text, for every action of the vocabulary.

The recorder's ``changes`` is the guard's row diff: a create lists every shown column ``{"from": null,
"to": value}``, a delete the reverse, an update only what changed; secrets appear as ``"[redacted]"``;
a bulk import carries counts plus the affected ids. Sizes vary as in life: a sign-in carries ``{}``, a
broadcast's create carries its HTML body, an import hundreds of contact ids.

Generating a diff per row would dominate seeding, so each action gets a pool of variants, made once and
stored as the canonical text the database holds (``log.chain.canonical_json``); rows pick from the pool.
A diff's values are plausible but need not name the row's resource: no filter or export reads inside them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from activitylog.log.actions import ALL_ACTIONS
from activitylog.log.chain import canonical_json, format_instant

VARIANTS = 48
REDACTED = "[redacted]"
FIRST = ("ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "radia")
LAST = ("lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie")
TOPICS = ("Spring picks", "Summer sale", "Weekly digest", "Product update", "Webinar invite", "New arrivals")
WORDS = ("our", "new", "season", "collection", "is", "here", "with", "picks", "for", "you", "and", "free")
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

Diff = dict[str, dict[str, Any]]


def ulid_id(rng: random.Random, prefix: str) -> str:
    bits = rng.getrandbits(120)
    return f"{prefix}_01" + "".join(_ALPHABET[(bits >> (5 * i)) & 31] for i in range(24))


def _created(values: dict[str, Any]) -> Diff:
    return {k: {"from": None, "to": v} for k, v in values.items() if v is not None}


def _deleted(values: dict[str, Any]) -> Diff:
    return {k: {"from": v, "to": None} for k, v in values.items() if v is not None}


def _changed(field: str, old: Any, new: Any) -> Diff:
    return {field: {"from": old, "to": new}}


def _when(rng: random.Random) -> str:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    return format_instant(
        base + timedelta(seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6))
    )


def _email(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{rng.randrange(1000)}@example.{rng.choice(['com', 'org'])}"


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def _contact(rng: random.Random) -> dict[str, Any]:
    return {
        "email": _email(rng),
        "first_name": rng.choice(FIRST).title() if rng.random() < 0.8 else None,
        "last_name": rng.choice(LAST).title() if rng.random() < 0.6 else None,
        "list_id": ulid_id(rng, "lst"),
        "status": "subscribed",
    }


def _broadcast(rng: random.Random) -> dict[str, Any]:
    topic = rng.choice(TOPICS)
    paragraphs = "".join(f"<p>{_prose(rng, rng.randint(15, 60))}</p>\n" for _ in range(rng.randint(2, 12)))
    audience = ("list_id", "lst") if rng.random() < 0.7 else ("segment_id", "seg")
    return {
        "name": f"{topic} #{rng.randrange(300)}",
        "subject": f"{topic}: {_prose(rng, rng.randint(3, 8))}",
        "from_email": f"news@mail{rng.randrange(6)}.bench-outfitters.example",
        audience[0]: ulid_id(rng, audience[1]),
        "html": f'<html><body style="font-family: sans-serif">\n<h1>{topic}</h1>\n{paragraphs}</body></html>',
        "text": _prose(rng, rng.randint(20, 120)),
        "status": "draft",
    }


def _conditions(rng: random.Random) -> list[dict[str, Any]]:
    fields = ("email", "first_name", "last_name", "status")
    ops = ("equals", "contains", "starts_with", "ends_with")
    return [
        {"field": rng.choice(fields), "op": rng.choice(ops), "value": rng.choice((*FIRST, "example.org"))}
        for _ in range(rng.randint(1, 4))
    ]


def _rule(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.5:
        condition: dict[str, Any] = {"event": rng.choice(["complaint", "hard_bounce"])}
    else:
        condition = {
            "metric": rng.choice(["bounce_rate", "complaint_rate"]),
            "threshold": rng.choice([0.003, 0.01, 0.05]),
            "window_minutes": rng.choice([60, 1440]),
            "min_sends": rng.choice([100, 500]),
        }
    action = {"type": rng.choice(["suppress_address", "pause_broadcast", "pause_sending"])}
    return {"name": f"Rule {rng.randrange(100)}", "condition": condition, "action": action, "enabled": True}


def _domain(rng: random.Random) -> dict[str, Any]:
    return {
        "domain": f"mail{rng.randrange(50)}.bench-outfitters.example",
        "status": "pending",
        "dkim_selector": "activitylog",
        "dkim_private_key": REDACTED,
    }


def _contact_diff(rng: random.Random, verb: str) -> Diff:
    if verb == "create":
        return _created(_contact(rng))
    if verb == "delete":
        return _deleted({**_contact(rng), "status": rng.choice(["subscribed", "unsubscribed"])})
    pick = rng.choice(["first_name", "last_name", "status", "email"])
    if pick == "status":
        return _changed("status", "subscribed", "unsubscribed")
    if pick == "email":
        return _changed("email", _email(rng), _email(rng))
    source = FIRST if pick == "first_name" else LAST
    return _changed(pick, rng.choice((None, *source)), rng.choice(source).title())


def _broadcast_diff(rng: random.Random, verb: str) -> Diff:
    if verb == "create":
        return _created(_broadcast(rng))
    if verb == "delete":
        return _deleted(_broadcast(rng))
    if verb == "update":
        body = _broadcast(rng)
        pick = rng.choice(["subject", "html", "name", "text"])
        return _changed(pick, _broadcast(rng)[pick], body[pick])
    at = _when(rng)
    steps: dict[str, dict[str, tuple[Any, Any]]] = {
        "schedule": {"status": ("draft", "scheduled"), "send_at": (None, at)},
        "unschedule": {"status": ("scheduled", "draft"), "send_at": (at, None)},
        "send": {"status": ("scheduled", "sending"), "sent_at": (None, at)},
        "pause": {"status": ("sending", "paused")},
        "resume": {"status": ("paused", "sending")},
        "archive": {"status": ("sent", "archived")},
    }
    return {k: {"from": a, "to": b} for k, (a, b) in steps[verb].items()}


def _simple(
    make: Callable[[random.Random], dict[str, Any]], update: Callable[[random.Random], Diff]
) -> Callable[[random.Random, str], Diff]:
    """Diffs of a resource whose create and delete list its columns, and whose update is ``update``."""

    def diff(rng: random.Random, verb: str) -> Diff:
        if verb == "create":
            return _created(make(rng))
        if verb == "delete":
            return _deleted(make(rng))
        return update(rng)

    return diff


def _import(rng: random.Random) -> Diff:
    n = min(400, int(rng.paretovariate(1.2) * 3))
    return {
        "imported": {"from": None, "to": n},
        "skipped": {"from": None, "to": rng.randrange(20)},
        "contact_ids": {"from": None, "to": [ulid_id(rng, "con") for _ in range(n)]},
    }


# Resource types the seeded history never writes (bench/history.py's actions): their pools stay trivial.
NOT_SEEDED = ("stream", "legal_hold", "alert")


def _other(rng: random.Random, rtype: str, verb: str) -> Diff:
    """The verbs that are neither create, update nor delete, outside contacts and broadcasts."""
    at = _when(rng)
    if verb in ("login", "logout", "login_failed"):
        return {}
    if rtype == "list" and verb == "import":
        return _import(rng)
    if rtype == "address":
        email = _email(rng)
        row = {"email": email, "reason": rng.choice(["hard bounce", "complaint", "manual"])}
        return _created(row) if verb == "suppress" else _deleted(row)
    if rtype == "reputation_rule":
        return _changed("enabled", verb == "disable", verb == "enable")
    if rtype == "sending_domain":
        return {"status": {"from": "pending", "to": "verified"}, "verified_at": {"from": None, "to": at}}
    if rtype == "api_key" and verb == "rotate":
        return {
            "secret_hash": {"from": REDACTED, "to": REDACTED},
            "prefix": {"from": "alk_1a2b", "to": "alk_9f8e"},
        }
    if rtype == "api_key":
        return _changed("revoked_at", None, at)
    if rtype == "legal_hold":
        if verb == "create":
            return _created({"reason": "litigation", "since": None, "until": at})
        return _changed("released_at", None, at)
    if rtype == "stream":
        return _changed("status", "active", {"pause": "paused", "disable": "disabled"}.get(verb, "active"))
    if rtype == "contact" and verb == "erase":
        return {"entries_erased": {"from": None, "to": rng.randrange(1, 40)}}
    if rtype == "activity_log":
        window = {"since": at[:10], "action": rng.choice(["broadcast.*", "contact.create", "send"])}
        return {
            "filter": {"from": None, "to": window},
            "format": {"from": None, "to": rng.choice(["csv", "jsonl"])},
        }
    # The rest of the vocabulary (what later resources add) is rare in a history: a small generic shape.
    if verb == "create":
        return _created({"name": f"{rtype} {rng.randrange(20)}"})
    if verb == "delete":
        return _deleted({"name": f"{rtype} {rng.randrange(20)}"})
    return _changed("state", "before", verb)


_SHAPES: dict[str, Callable[[random.Random, str], Diff]] = {
    "contact": _contact_diff,
    "broadcast": _broadcast_diff,
    "list": _simple(
        lambda r: {"name": f"List {r.randrange(90)}"}, lambda r: _changed("name", "Leads", "VIP leads")
    ),
    "segment": _simple(
        lambda r: {"name": f"Engaged {r.randrange(60)}", "list_id": ulid_id(r, "lst"),
                   "conditions": _conditions(r)},
        lambda r: _changed("conditions", _conditions(r), _conditions(r)),
    ),
    "sending_domain": _simple(
        _domain, lambda r: _changed(r.choice(["return_path", "tracking_domain"]), None, "bounce.example.com")
    ),
    "reputation_rule": _simple(
        _rule, lambda r: _changed("condition", _rule(r)["condition"], _rule(r)["condition"])
    ),
    "api_key": _simple(
        lambda r: {"name": f"Integration {r.randrange(20)}", "scopes": ["full"], "secret_hash": REDACTED,
                   "prefix": f"alk_{r.getrandbits(16):04x}"},
        lambda r: {},
    ),
    "user": _simple(
        lambda r: {"email": _email(r), "password_hash": REDACTED, "role": r.choice(["admin", "member"])},
        lambda r: _changed("role", "member", "admin"),
    ),
    "account": _simple(
        lambda r: {"name": "Bench Co"}, lambda r: _changed("name", "Bench Co", "Bench Co Ltd")
    ),
}  # fmt: skip


def _denied(rng: random.Random) -> dict[str, Any]:
    """What ``services.refusals`` records for a refused attempt (every resource type has ``.denied``)."""
    reason = rng.choice(["the member role cannot do this", "the API key's scope does not allow this"])
    return {"attempted": rng.choice(["create", "update", "delete"]), "status": 403, "reason": reason}


def make_diff(rng: random.Random, action: str) -> Diff:
    rtype, verb = action.split(".", 1)
    if verb == "denied":
        return _denied(rng)
    shape = _SHAPES.get(rtype)
    if shape is not None and (verb in ("create", "update", "delete") or rtype == "broadcast"):
        return shape(rng, verb)
    return _other(rng, rtype, verb)


def diff_pools(rng: random.Random, variants: int = VARIANTS) -> dict[str, list[str]]:
    """Canonical ``changes`` texts, ``variants`` per action of the vocabulary."""
    return {
        action: [canonical_json(make_diff(rng, action)) for _ in range(variants)]
        for action in sorted(ALL_ACTIONS)
    }
