"""``activitylog demo``: an account with a realistic history, made through the real services.

Every entry is produced by the same code paths as the API — the services inside one nesting unit of work, so
each entry passes the real choke point (``log/record.py``) and guard — with actors (the team's sessions, API
keys, reputation rules, the scheduler and dispatcher), source IPs and user agents varied, over six weeks that
end now and follow office hours and weekends.

Why it is shaped like this: ``--entries 1000000`` must take minutes, not hours, so

* the history remembers what it made (:class:`Pool` of ids, broadcasts by status, ...) instead of asking the
  database before each step, and only ever picks an action the current state allows: no step fails, so no
  savepoint per step is needed (a failure is a bug here and aborts the batch);
* passwords are hashed (argon2, ~0.1 s each) only for the handful of users ever invited;
* entries are committed in large batches and counted from the unit of work, not with ``COUNT(*)``.

The first simulated hour is an onboarding script that performs every kind of action once, so even a short
history has them all; after that, actions are drawn by weight (see ``VOLUME`` and ``TEAM``).
"""

from __future__ import annotations

import heapq
import json
import random
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import accumulate, count
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy import select

from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import ActivityEntry, ApiKey, Broadcast, BroadcastStatus, User
from activitylog.errors import Conflict
from activitylog.ids import ulid_text
from activitylog.log.record import Actor, RequestContext, batched
from activitylog.services import (
    accounts,
    api_keys,
    auth,
    broadcasts,
    dkim,
    lists,
    refusals,
    reputation_rules,
    retention,
    seeding,
    segments,
    sending_domains,
    streams,
    users,
)
from activitylog.services.auth import Principal, Refused
from activitylog.services.reputation_rules import RuleActionType, RuleEvent, RuleMetric
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a published demo login, not a secret)
BATCH = 1000  # entries per transaction: one commit (fsync) per thousand
HISTORY = timedelta(days=42)
HOUR = timedelta(hours=1)
MAX_INVITES = 6  # argon2 makes each invited user cost ~0.1 s
MAX_KEYS, MAX_DOMAINS, MAX_RULES = 6, 5, 8
REMEMBERED = 20_000  # contacts (and suppressed addresses) kept for later edits: memory stays flat at 1M
CLI_CONTEXT = RequestContext(user_agent="activitylog-cli")
SCHEDULER = "system", "scheduler", "activitylog scheduler"
STREAMS = "system", "streams", "activitylog streams"
HOLD_REASONS = ("Annual PCI DSS review", "Customer complaint #4411", "Vendor security assessment")
DISPATCHER = "system", "dispatcher", "activitylog dispatcher"

BROWSERS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Edg/126.0 Safari/537.36",
)
CLIENTS = ("python-httpx/0.28", "Zapier/1.0", "curl/8.5.0", "node-fetch/3.3", "HubSpot-Webhooks/2.1")
FIRST = ("ada", "alan", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances", "john", "radia")
LAST = ("lovelace", "turing", "hopper", "torvalds", "hamilton", "thompson", "liskov", "ritchie", "allen")
MAILBOXES = ("example.com", "example.org", "example.net")
TOPICS = ("Spring picks", "Summer sale", "Weekly digest", "Product update", "Webinar invite", "New arrivals")
LIST_NAMES = ("VIP", "Leads", "Customers", "Beta", "Wholesale", "Event signups")
KEY_NAMES = ("Shopify sync", "Segment", "Staging", "Webhook relay", "BI export")
RULES = (
    ("Suppress hard bounces", {"event": RuleEvent.HARD_BOUNCE}, RuleActionType.SUPPRESS_ADDRESS),
    ("Suppress complainers", {"event": RuleEvent.COMPLAINT}, RuleActionType.SUPPRESS_ADDRESS),
    (
        "Pause on bounce spike",
        {"metric": RuleMetric.BOUNCE_RATE, "threshold": 0.05, "window_minutes": 60, "min_sends": 100},
        RuleActionType.PAUSE_BROADCAST,
    ),
    (
        "Pause on complaints",
        {"metric": RuleMetric.COMPLAINT_RATE, "threshold": 0.003, "window_minutes": 1440, "min_sends": 500},
        RuleActionType.PAUSE_SENDING,
    ),
)


class Pool:
    """Ids with O(1) add, remove and uniform random pick: the demo's memory of what exists."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._where: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def add(self, item: str) -> None:
        if item not in self._where:
            self._where[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        index = self._where.pop(item, None)
        if index is None:
            return
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._where[last] = index

    def pick(self, rng: random.Random) -> str | None:
        return rng.choice(self._items) if self._items else None

    def recent(self, n: int) -> list[str]:
        """Roughly the ``n`` latest additions (removals move the last item into the gap)."""
        return self._items[-n:]


def _activity(at: datetime) -> float:
    """How busy the account is at ``at`` (UTC): a team across Europe and the US, quiet nights and weekends."""
    hour = 1.0 if 8 <= at.hour < 18 else 0.4 if 6 <= at.hour < 23 else 0.08
    return hour * (1.0 if at.weekday() < 5 else 0.25)


class Timeline:
    """Spreads entries ``first``..``last`` over ``start``..``end``, busier when :func:`_activity` says so."""

    def __init__(self, start: datetime, end: datetime, first: int, last: int) -> None:
        self.start, self.end, self.first, self.span = start, end, first, max(1, last - first)
        hours = max(1, int((end - start) / HOUR))
        self.cumulative = list(accumulate(_activity(start + i * HOUR) for i in range(hours)))

    def at(self, entry: float) -> datetime:
        """When entry number ``entry`` (fractional: jitter) happens."""
        target = min(1.0, (entry - self.first) / self.span) * self.cumulative[-1]
        i = bisect_left(self.cumulative, target)
        if i >= len(self.cumulative):
            return self.end
        before = self.cumulative[i - 1] if i else 0.0
        fraction = (target - before) / (self.cumulative[i] - before)
        return min(self.start + (i + fraction) * HOUR, self.end)


class History:
    """The account's state as the demo made it, and who acts: drives the services over simulated weeks."""

    def __init__(self, db: Database, account_id: str, rng: random.Random, start: datetime) -> None:
        self.db, self.account_id, self.rng, self.now = db, account_id, rng, start
        self.uow = UnitOfWork(
            db, account_id=account_id, actor=SYSTEM_CLI, context=CLI_CONTEXT, clock=self.clock
        )
        self.committed = 0
        self.serial = count(1)
        self.hands = 1.0  # how much of the work the team does by hand (see HANDS)
        self.mix = _mix(self.hands)
        # who acts
        self.actors: dict[str, Actor] = {}
        self.roles: dict[str, str] = {}
        self.ips: dict[str, list[str]] = {}
        self.people, self.admins, self.guests, self.keys = Pool(), Pool(), Pool(), Pool()
        self.invites = 0
        # what exists (contacts and suppressions: the most recent REMEMBERED, roughly)
        self.lists, self.contacts, self.segments, self.suppressed = Pool(), Pool(), Pool(), Pool()
        self.list_of: dict[str, str] = {}  # contact or segment id -> its list
        self.members: dict[str, set[str]] = {}  # list id -> contact ids
        self.users_of: Counter[str] = Counter()  # list or segment id -> broadcasts and segments using it
        self.status: dict[str, str] = {}  # broadcast id -> status
        self.by_status: dict[str, Pool] = {s: Pool() for s in BroadcastStatus}
        self.audience: dict[str, str] = {}  # broadcast id -> list or segment id
        self.sender: dict[str, str] = {}  # broadcast id -> ref of whoever scheduled or sent it
        self.due: dict[str, datetime] = {}  # broadcast id -> when the scheduler or dispatcher acts next
        self.events: list[tuple[datetime, str]] = []  # heap of (due, broadcast id)
        self.domains: dict[str, tuple[str, str]] = {}  # id -> (domain, status)
        self.rules: dict[str, tuple[str, str, bool]] = {}  # id -> (name, action type, enabled)
        self.holds: dict[str, bool] = {}  # legal hold id -> released
        self.sessions: dict[str, list[str]] = {}  # user id -> tokens of the sessions it has open
        self.session_ttl = timedelta(hours=Settings().session_ttl_hours)

    # -- time and entries ------------------------------------------------------------------------------------

    def clock(self) -> datetime:
        return self.now

    @property
    def done(self) -> int:
        return self.committed + len(self.uow.entries)

    def batch_done(self) -> None:
        self.committed += len(self.uow.entries)
        self.uow.entries = []

    def request_id(self) -> str:
        """A ULID at the simulated time, as the web layer stamps its requests."""
        return ulid_text(int(self.now.timestamp() * 1000), self.rng.getrandbits(80))

    # -- actors ----------------------------------------------------------------------------------------------

    def join(self, actor: Actor, role: str | None = None, guest: bool = False) -> None:
        self.actors[actor.id] = actor
        self.ips[actor.id] = _ip_pool(self.rng, 3 if role else 2)
        if role is None:
            self.keys.add(actor.id)
            return
        self.people.add(actor.id)
        self.roles[actor.id] = role
        if role in ("owner", "admin"):
            self.admins.add(actor.id)
        if guest:
            self.guests.add(actor.id)

    def leave(self, actor_id: str) -> None:
        for pool in (self.people, self.admins, self.guests, self.keys):
            pool.discard(actor_id)
        self.sessions.pop(actor_id, None)  # a removed user's sessions go with it

    def act_as(self, actor: Actor) -> UnitOfWork:
        """A unit of work by ``actor`` in the batch's transaction."""
        return self.uow.acting_as(actor, self.request_by(actor))

    def request_by(self, actor: Actor) -> RequestContext:
        """A request from one of the actor's usual addresses and clients (none for the system's actors)."""
        if actor.type not in ("session", "api_key"):
            return RequestContext()
        agents = BROWSERS if actor.type == "session" else CLIENTS
        ip, agent = self.rng.choice(self.ips[actor.id]), self.rng.choice(agents)
        return RequestContext(ip=ip, user_agent=agent, request_id=self.request_id())

    def actor(self, pool: Pool) -> Actor:
        actor_id = pool.pick(self.rng)
        assert actor_id is not None, "the demo team is never empty"
        return self.actors[actor_id]

    def someone(self, keys: float = 0.35) -> UnitOfWork:
        """A team member in the dashboard or, with probability ``keys``, an integration's API key."""
        return self.act_as(self.actor(self.keys if self.rng.random() < keys else self.people))

    def integration(self, keys: float) -> UnitOfWork:
        """Like :meth:`someone`, for bulk work: the longer the history, the more of it is done by API keys."""
        return self.someone(keys=1 - (1 - keys) * self.hands)

    def admin(self) -> UnitOfWork:
        return self.act_as(self.actor(self.admins))

    def owner(self) -> UnitOfWork:
        return self.act_as(self.owner_actor)

    @property
    def owner_actor(self) -> Actor:
        return next(self.actors[i] for i, role in self.roles.items() if role == "owner")

    def system(self, who: tuple[str, str, str], on_behalf_of: str | None) -> UnitOfWork:
        return self.act_as(Actor(*who, on_behalf_of=on_behalf_of))

    # -- made-up data ----------------------------------------------------------------------------------------

    def person(self) -> dict[str, str]:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        email = f"{first}.{last}.{next(self.serial)}@{self.rng.choice(MAILBOXES)}"  # unique: no conflicts
        return {"email": email, "first_name": first.title(), "last_name": last.title()}

    def email(self) -> str:
        return self.person()["email"]

    # -- bookkeeping of what exists -----------------------------------------------------------------------

    def add_contacts(self, list_id: str, contact_ids: list[str]) -> None:
        for contact_id in contact_ids:
            if len(self.contacts) >= REMEMBERED:  # forget one: it stays in the list, just never edited again
                self.drop_contact(self.contacts.pick(self.rng) or contact_id)
            self.contacts.add(contact_id)
            self.list_of[contact_id] = list_id
            self.members[list_id].add(contact_id)

    def drop_contact(self, contact_id: str) -> None:
        self.contacts.discard(contact_id)
        list_id = self.list_of.pop(contact_id, None)
        if list_id is not None:
            self.members[list_id].discard(contact_id)

    def add_suppressed(self, email: str) -> None:
        if len(self.suppressed) >= REMEMBERED:
            self.suppressed.discard(self.suppressed.pick(self.rng) or email)
        self.suppressed.add(email)

    def unused(self, pool: Pool) -> str | None:
        """A list or segment nothing refers to (deletable): a few random picks, then the recent ones."""
        candidates = [pool.pick(self.rng) for _ in range(8)] + pool.recent(16)
        return next((c for c in candidates if c is not None and not self.users_of[c]), None)

    def set_status(self, broadcast_id: str, status: str | None) -> None:
        old = self.status.pop(broadcast_id, None)
        if old is not None:
            self.by_status[old].discard(broadcast_id)
        self.due.pop(broadcast_id, None)
        if status is not None:
            self.status[broadcast_id] = status
            self.by_status[status].add(broadcast_id)

    def expect(self, broadcast_id: str, at: datetime) -> None:
        """The scheduler (for a scheduled broadcast) or the dispatcher (for a sending one) acts at ``at``."""
        self.due[broadcast_id] = at
        heapq.heappush(self.events, (at, broadcast_id))

    def broadcast_pick(self, action: str) -> str | None:
        """A broadcast whose status allows ``action`` (the services' lifecycle table decides which)."""
        statuses = broadcasts.LIFECYCLE[action].sources
        sizes = [len(self.by_status[s]) for s in statuses]
        if not sum(sizes):
            return None
        status = self.rng.choices(statuses, weights=sizes)[0]
        return self.by_status[status].pick(self.rng)

    def rule(self, action_type: str) -> Actor | None:
        """An enabled rule with this action, as the actor of what it does."""
        found = [(i, name) for i, (name, kind, on) in self.rules.items() if on and kind == action_type]
        if not found:
            return None
        rule_id, name = self.rng.choice(found)
        return Actor("rule", rule_id, name)


def _ip_pool(rng: random.Random, n: int) -> list[str]:
    nets = ("203.0.113.", "198.51.100.", "192.0.2.")
    pool = [rng.choice(nets) + str(rng.randint(2, 254)) for _ in range(n)]
    if rng.random() < 0.4:
        pool.append(f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}")
    return pool


# -- moves: one service call each, returning False when the current state does not allow it --------------

Move = Callable[[History], bool]


def _add_list(h: History) -> bool:
    name = f"{h.rng.choice(LIST_NAMES)} {h.rng.randint(1, 99)}"
    lst = lists.create_list(h.someone(keys=0.1), name)
    h.lists.add(lst.id)
    h.members[lst.id] = set()
    return True


def _rename_list(h: History) -> bool:
    list_id = h.lists.pick(h.rng)
    if list_id is None:
        return False
    lists.update_list(h.someone(keys=0.1), list_id, {"name": f"{h.rng.choice(TOPICS)} subscribers"})
    return True


def _remove_list(h: History) -> bool:
    list_id = h.unused(h.lists)
    if list_id is None or len(h.lists) < 2:
        return False
    lists.delete_list(h.someone(keys=0.1), list_id)
    h.lists.discard(list_id)
    for contact_id in list(h.members[list_id]):
        h.drop_contact(contact_id)
    del h.members[list_id]
    return True


def _add_contact(h: History) -> bool:
    list_id = h.lists.pick(h.rng)
    if list_id is None:
        return False
    contact = seeding.create_contact(h.integration(keys=0.6), list_id, h.person())
    h.add_contacts(list_id, [contact.id])
    return True


def _edit_contact(h: History) -> bool:
    contact_id = h.contacts.pick(h.rng)
    if contact_id is None:
        return False
    first, last = h.rng.choice(FIRST).title(), h.rng.choice(LAST).title()
    change = h.rng.choice(
        ({"status": "unsubscribed"}, {"status": "subscribed"}, {"first_name": first}, {"last_name": last})
    )
    seeding.update_contact(h.integration(keys=0.6), contact_id, change)
    return True


def _remove_contact(h: History) -> bool:
    contact_id = h.contacts.pick(h.rng)
    if contact_id is None:
        return False
    seeding.delete_contact(h.integration(keys=0.35), contact_id)
    h.drop_contact(contact_id)
    return True


def _import(h: History) -> bool:
    """A CSV upload or a CRM sync; a few rows repeat, and the service skips them."""
    list_id = h.lists.pick(h.rng)
    if list_id is None:
        return False
    rows = [h.person() for _ in range(h.rng.randint(5, 40))]
    rows += h.rng.sample(rows, h.rng.randint(0, 3))
    h.add_contacts(list_id, seeding.import_contacts(h.integration(keys=0.8), list_id, rows))
    return True


def _add_segment(h: History) -> bool:
    list_id = h.lists.pick(h.rng)
    if list_id is None:
        return False
    days = h.rng.choice([7, 30, 90])
    values = {
        "name": f"Engaged in {days} days #{h.rng.randint(1, 999)}",
        "list_id": list_id,
        "conditions": [{"field": "engaged_within_days", "op": "within", "value": days}],
    }
    segment = segments.create_segment(h.someone(keys=0.1), values)
    h.segments.add(segment.id)
    h.list_of[segment.id] = list_id
    h.users_of[list_id] += 1
    return True


def _edit_segment(h: History) -> bool:
    segment_id = h.segments.pick(h.rng)
    if segment_id is None:
        return False
    days = h.rng.choice([7, 14, 30, 60, 90])
    conditions = [{"field": "engaged_within_days", "op": "within", "value": days}]
    segments.update_segment(h.someone(keys=0.1), segment_id, {"conditions": conditions})
    return True


def _remove_segment(h: History) -> bool:
    segment_id = h.unused(h.segments)
    if segment_id is None:
        return False
    segments.delete_segment(h.someone(keys=0.1), segment_id)
    h.segments.discard(segment_id)
    h.users_of[h.list_of.pop(segment_id)] -= 1
    return True


def _add_broadcast(h: History) -> bool:
    target = h.segments if h.segments and h.rng.random() < 0.3 else h.lists
    audience = target.pick(h.rng)
    if audience is None or not h.domains:
        return False
    topic, (domain, _) = h.rng.choice(TOPICS), h.rng.choice(list(h.domains.values()))
    values = {
        "name": f"{topic} #{h.rng.randint(1, 999)}",
        "subject": topic,
        "from_email": f"news@{domain}",
        "text": f"{topic} — read on.",
    }
    values["segment_id" if target is h.segments else "list_id"] = audience
    broadcast = broadcasts.create_broadcast(h.someone(), values)
    h.set_status(broadcast.id, broadcast.status)
    h.audience[broadcast.id] = audience
    h.users_of[audience] += 1
    return True


def _edit_broadcast(h: History) -> bool:
    broadcast_id = h.broadcast_pick("update")
    if broadcast_id is None:
        return False
    subject = f"{h.rng.choice(TOPICS)}: {h.rng.randint(10, 60)}% off"
    broadcasts.update_broadcast(h.someone(), broadcast_id, {"subject": subject})
    return True


def _schedule(h: History) -> bool:
    broadcast_id = h.broadcast_pick("schedule")
    if broadcast_id is None:
        return False
    uow = h.someone()
    send_at = h.now + timedelta(minutes=h.rng.randint(60, 4 * 24 * 60))
    h.set_status(broadcast_id, broadcasts.schedule(uow, broadcast_id, send_at).status)
    h.sender[broadcast_id] = uow.actor.ref
    h.expect(broadcast_id, send_at)
    return True


def _unschedule(h: History) -> bool:
    broadcast_id = h.broadcast_pick("unschedule")
    if broadcast_id is None:
        return False
    h.set_status(broadcast_id, broadcasts.unschedule(h.someone(), broadcast_id).status)
    return True


def _sending(h: History, broadcast_id: str) -> None:
    """Delivery to a real list is throttled: the dispatcher finishes hours later."""
    h.set_status(broadcast_id, BroadcastStatus.SENDING)
    h.expect(broadcast_id, h.now + timedelta(minutes=h.rng.randint(90, 12 * 60)))


def _send_now(h: History) -> bool:
    broadcast_id = h.broadcast_pick("send")
    if broadcast_id is None:
        return False
    uow = h.someone(keys=0.2)
    broadcasts.send(uow, broadcast_id)
    h.sender[broadcast_id] = uow.actor.ref
    _sending(h, broadcast_id)
    return True


def _pause(h: History, uow: UnitOfWork | None = None) -> bool:
    broadcast_id = h.broadcast_pick("pause")
    if broadcast_id is None:
        return False
    h.set_status(broadcast_id, broadcasts.pause(uow or h.someone(keys=0.1), broadcast_id).status)
    return True


def _resume(h: History) -> bool:
    broadcast_id = h.broadcast_pick("resume")
    if broadcast_id is None:
        return False
    broadcasts.resume(h.someone(keys=0.1), broadcast_id)
    _sending(h, broadcast_id)
    return True


def _remove_broadcast(h: History) -> bool:
    """Only what went out to nobody can be deleted (the demo's paused broadcasts have no deliveries)."""
    broadcast_id = h.broadcast_pick("delete")
    if broadcast_id is None:
        return False
    broadcasts.delete_broadcast(h.someone(keys=0.1), broadcast_id)
    h.set_status(broadcast_id, None)
    h.users_of[h.audience.pop(broadcast_id)] -= 1
    h.sender.pop(broadcast_id, None)
    return True


def _archive_broadcast(h: History) -> bool:
    """What went out is archived instead, which releases its list or segment."""
    broadcast_id = h.broadcast_pick("archive")
    if broadcast_id is None:
        return False
    h.set_status(broadcast_id, broadcasts.archive(h.someone(keys=0.1), broadcast_id).status)
    h.users_of[h.audience.pop(broadcast_id)] -= 1
    h.sender.pop(broadcast_id, None)
    return True


def _due(h: History, broadcast_id: str) -> None:
    """The scheduler sends a scheduled broadcast, or the dispatcher finishes a sending one, with made-up
    counts (the demo sends no mail) through the service the real dispatcher uses."""
    on_behalf_of = h.sender.get(broadcast_id)
    if h.status[broadcast_id] == BroadcastStatus.SCHEDULED:
        try:
            broadcasts.send(h.system(SCHEDULER, on_behalf_of), broadcast_id)
        except Conflict:  # the scheduler of a server already running on this database got there first
            h.set_status(broadcast_id, None)  # it is the server's to finish now, not the history's
            return
        _sending(h, broadcast_id)
        return
    uow = h.system(DISPATCHER, on_behalf_of)
    audience = h.audience[broadcast_id]
    members = len(h.members.get(h.list_of.get(audience, audience), ()))
    suppressed = h.rng.randint(0, min(3, members))
    failed = h.rng.randint(0, 1) if members > suppressed else 0
    delivered = members - suppressed - failed
    counts = {"recipients": delivered + failed, "delivered": delivered, "failed": failed}
    broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
    broadcasts.finish(uow, broadcast, {**counts, "suppressed": suppressed})
    h.set_status(broadcast_id, broadcast.status)


def _suppress(h: History) -> bool:
    reason = h.rng.choice(["requested by recipient", "spam complaint", "hard bounce", None])
    row = seeding.suppress(h.integration(keys=0.5), h.email(), reason)
    h.add_suppressed(row.email)
    return True


def _unsuppress(h: History) -> bool:
    email = h.suppressed.pick(h.rng)
    if email is None:
        return False
    seeding.unsuppress(h.integration(keys=0.2), email)
    h.suppressed.discard(email)
    return True


def _rule_suppresses(h: History) -> bool:
    """A hard bounce or complaint during a send: a suppression rule adds the address."""
    rule = h.rule(RuleActionType.SUPPRESS_ADDRESS)
    if rule is None or not h.by_status[BroadcastStatus.SENDING]:
        return False
    reason = "hard bounce" if "bounce" in (rule.name or "") else "spam complaint"
    row = seeding.suppress(h.act_as(rule), h.email(), reason)
    h.add_suppressed(row.email)
    return True


def _rule_pauses(h: History) -> bool:
    rule = h.rule(RuleActionType.PAUSE_BROADCAST)
    return rule is not None and _pause(h, h.act_as(rule))


# The demo's domains live under .example, which no real DNS answers for: "Verify DNS" runs its real checks
# against this zone, which publishes an SPF policy and a mail exchanger for every demo domain, and the
# public half of the demo's DKIM key, which the domains that were given that key then match.
DEMO_DKIM_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAf1L0YlVLRYpDZtqYH+GFLQq7Mt92fWa/le0NZKnvDt\n"
    "-----END PRIVATE KEY-----\n"
)


def demo_zone(name: str, rdtype: str) -> list[str]:
    if rdtype == "MX":
        return ["mx1.demo-outfitters.example"]
    if "._domainkey." in name:
        k, p = dkim.public_record(DEMO_DKIM_KEY)
        return [f"v=DKIM1; k={k}; p={p}"]
    return ["v=spf1 include:_spf.demo-outfitters.example -all"]


def _add_domain(h: History) -> bool:
    if len(h.domains) >= MAX_DOMAINS:
        return False
    name = f"{h.rng.choice(['mail', 'news', 'promo', 'hello'])}{next(h.serial)}.demo-outfitters.example"
    row = sending_domains.create_domain(h.admin(), name)
    h.domains[row.id] = (row.domain, "pending")
    return True


def _edit_domain(h: History) -> bool:
    if not h.domains:
        return False
    domain_id = h.rng.choice(list(h.domains))
    change = h.rng.choice(
        (
            {"return_path": f"bounce{h.rng.randint(1, 9)}.demo-outfitters.example"},
            {"dkim_selector": f"s{h.rng.randint(1, 99)}"},
            {"tracking_domain": f"t{h.rng.randint(1, 9)}.demo-outfitters.example"},
            {"dkim_private_key": DEMO_DKIM_KEY},
        )
    )
    row = sending_domains.update_domain(h.admin(), domain_id, change)
    h.domains[domain_id] = (row.domain, row.status)
    return True


def _verify_domain(h: History) -> bool:
    pending = [i for i, (_, status) in h.domains.items() if status in ("pending", "failed")]
    if not pending:
        return False
    domain_id = h.rng.choice(pending)
    row = sending_domains.verify_domain(h.admin(), domain_id, lookup=demo_zone)
    h.domains[domain_id] = (row.domain, row.status)
    return True


def _remove_domain(h: History) -> bool:
    if len(h.domains) < 3:
        return False
    domain_id = h.rng.choice(list(h.domains))
    sending_domains.delete_domain(h.admin(), domain_id)
    del h.domains[domain_id]
    return True


def _add_rule(h: History, template: tuple[str, dict[str, Any], str] | None = None) -> bool:
    if len(h.rules) >= MAX_RULES:
        return False
    name, condition, action = template or h.rng.choice(RULES)
    values = {"name": name, "condition": condition, "action": {"type": action}}
    rule = reputation_rules.create_rule(h.admin(), values)
    h.rules[rule.id] = (rule.name, action, True)
    return True


def _edit_rule(h: History) -> bool:
    rates = [i for i, (_, action, _) in h.rules.items() if action != RuleActionType.SUPPRESS_ADDRESS]
    if not rates:
        return False
    rule_id = h.rng.choice(rates)
    metric = h.rng.choice(list(RuleMetric))
    threshold = (
        h.rng.choice([0.02, 0.03, 0.05, 0.08])
        if metric == RuleMetric.BOUNCE_RATE
        else 0.001 * h.rng.randint(1, 5)
    )
    condition = {
        "metric": metric,
        "threshold": threshold,
        "window_minutes": h.rng.choice([30, 60, 1440]),
        "min_sends": h.rng.choice([100, 500]),
    }
    reputation_rules.update_rule(h.admin(), rule_id, {"condition": condition})
    return True


def _switch_rule(h: History, enabled: bool) -> bool:
    switchable = [i for i, (_, _, on) in h.rules.items() if on != enabled]
    if not switchable:
        return False
    rule_id = h.rng.choice(switchable)
    reputation_rules.set_enabled(h.admin(), rule_id, enabled)
    name, action, _ = h.rules[rule_id]
    h.rules[rule_id] = (name, action, enabled)
    return True


def _disable_rule(h: History) -> bool:
    return _switch_rule(h, False)


def _enable_rule(h: History) -> bool:
    return _switch_rule(h, True)


def _remove_rule(h: History) -> bool:
    if len(h.rules) < 4:
        return False
    rule_id = h.rng.choice(list(h.rules))
    reputation_rules.delete_rule(h.admin(), rule_id)
    del h.rules[rule_id]
    return True


def _sign_in(h: History) -> bool:
    """A team member signs in: a session through ``services.auth`` (its password check, argon2 at ~0.1 s
    each, is the one step left out), kept to sign out of later."""
    person = h.actor(h.people)
    signed_in = auth.open_session(h.act_as(person), h.session_ttl)
    h.sessions.setdefault(person.id, []).append(signed_in.token)
    return True


def _sign_out(h: History) -> bool:
    open_ = [i for i, tokens in h.sessions.items() if tokens]
    if not open_:
        return False
    person_id = h.rng.choice(open_)
    auth.close_session(h.act_as(h.actors[person_id]), h.sessions[person_id].pop())
    return True


def _failed_sign_in(h: History) -> bool:
    """A wrong password for a member's address: theirs, or in three cases of ten someone else's try."""
    person = h.actor(h.people)
    context = h.request_by(person)
    if h.rng.random() < 0.3:
        context = replace(context, ip=_ip_pool(h.rng, 1)[0], user_agent=CLIENTS[2])
    user = h.uow.get(User, person.id)
    auth.record_failure(h.uow.acting_as(auth.anonymous(user.email), context), user, locked=False)
    return True


def _invite(h: History, email: str, role: str, guest: bool = True) -> None:
    user = users.create_user(h.owner(), email=email, password=DEMO_PASSWORD, role=role)
    h.join(Actor("session", user.id, user.email), role, guest=guest)


def _invite_user(h: History) -> bool:
    if h.invites >= MAX_INVITES:
        return False
    h.invites += 1
    name = f"{h.rng.choice(FIRST)}.{next(h.serial)}"
    _invite(h, f"{name}@agency.example", h.rng.choice(["member", "member", "admin"]))
    return True


def _change_role(h: History) -> bool:
    others = [i for i in h.people if h.roles[i] != "owner"]
    if not others:
        return False
    user_id = h.rng.choice(others)
    role = "member" if h.roles[user_id] == "admin" else "admin"
    users.update_user(h.owner(), user_id, {"role": role})
    h.roles[user_id] = role
    (h.admins.add if role == "admin" else h.admins.discard)(user_id)
    return True


def _remove_user(h: History) -> bool:
    user_id = h.guests.pick(h.rng)
    if user_id is None:
        return False
    users.delete_user(h.owner(), user_id)
    h.leave(user_id)
    return True


def _create_key(h: History) -> bool:
    if len(h.keys) >= MAX_KEYS:
        return False
    name = h.rng.choice(KEY_NAMES)
    issued = api_keys.create_api_key(h.admin(), name=name, scopes=[h.rng.choice(["full", "write"])])
    h.join(Actor("api_key", issued.key.id, name))
    return True


def _rotate_key(h: History) -> bool:
    key_id = h.keys.pick(h.rng)
    if key_id is None:
        return False
    api_keys.rotate_api_key(h.admin(), key_id)
    return True


def _revoke_key(h: History) -> bool:
    key_id = h.keys.pick(h.rng)
    if key_id is None or len(h.keys) < 3:
        return False
    revoked = api_keys.revoke_api_key(h.admin(), key_id)
    h.act_as(h.actors[key_id]).record("api_key.login_failed", revoked, {})  # its integration tries once more
    h.leave(key_id)
    return True


REFUSALS = (  # what a member tries that only owners and admins may do
    ("user", "create", "users:manage"),
    ("api_key", "create", "api_keys:manage"),
    ("activity_log", "export", "activity:read"),
)


def _refused(h: History) -> bool:
    """A member tries what the role may not: refused (403) and logged as the web layer logs it."""
    members = [i for i in h.people if h.roles[i] == "member"]
    if not members:
        return False
    actor = h.actors[h.rng.choice(members)]
    resource_type, verb, permission = h.rng.choice(REFUSALS)
    reason = Refused(Principal(h.account_id, actor, role="member"), permission).message
    refusals.record_refusal(h.act_as(actor), refusals.Attempt(resource_type, verb), reason)
    return True


def _hold(h: History) -> bool:
    """An admin places a legal hold for an audit, and later releases it."""
    open_holds = [i for i, released in h.holds.items() if not released]
    if open_holds:
        retention.release_hold(h.admin(), open_holds[0])
        h.holds[open_holds[0]] = True
        return True
    hold = retention.create_hold(
        h.admin(), reason=h.rng.choice(HOLD_REASONS), since=h.now - timedelta(days=90)
    )
    h.holds[hold.id] = False
    return True


def _stream_life(h: History) -> bool:
    """The security team tries a stream to their SIEM: set up paused, renamed, resumed, replayed, turned
    off by its destination, then removed — so no stream is left for a server's relay to deliver."""
    settings = Settings()
    created = streams.create_stream(
        h.admin(),
        {"name": "SIEM (trial)", "type": "nats", "subject": "siem.trial", "format": "json"},
        settings,
    )
    stream_id = created.stream.id
    streams.pause_stream(h.admin(), stream_id)
    streams.update_stream(h.admin(), stream_id, {"name": "SIEM"}, settings)
    streams.resume_stream(h.admin(), stream_id)
    streams.replay_stream(h.admin(), stream_id, 1)
    streams.disable_stream(h.system(STREAMS, None), stream_id, "the destination answered 410 Gone")
    streams.delete_stream(h.admin(), stream_id)
    return True


def _rename_account(h: History) -> bool:
    accounts.update_account(
        h.owner(), name=h.rng.choice(["Demo Outfitters", "Demo Outfitters Ltd", "Demo Outfitters EU"])
    )
    return True


# The everyday mix, by weight. The bulk (contacts and suppressions, mostly from integrations and rules) grows
# with --entries; what the team does by hand (sign-ins, broadcasts, settings) is paced by the calendar: past
# HANDS entries its weights shrink, so a million entries do not mean a thousand reputation rules.
VOLUME: tuple[tuple[Move, int], ...] = (
    (_add_contact, 200), (_edit_contact, 80), (_remove_contact, 25), (_import, 25),
    (_suppress, 80), (_unsuppress, 20), (_rule_suppresses, 25),
)  # fmt: skip
TEAM: tuple[tuple[Move, int], ...] = (
    (_add_list, 5), (_rename_list, 5), (_remove_list, 3),
    (_add_segment, 10), (_edit_segment, 8), (_remove_segment, 4),
    (_add_broadcast, 25), (_edit_broadcast, 20), (_schedule, 15), (_unschedule, 5), (_send_now, 12),
    (_pause, 5), (_resume, 6), (_remove_broadcast, 3), (_archive_broadcast, 3), (_rule_pauses, 2),
    (_add_domain, 1), (_edit_domain, 6), (_verify_domain, 6), (_remove_domain, 1),
    (_add_rule, 1), (_edit_rule, 3), (_disable_rule, 3), (_enable_rule, 3), (_remove_rule, 1),
    (_sign_in, 110), (_sign_out, 60), (_failed_sign_in, 12),
    (_invite_user, 1), (_change_role, 1), (_remove_user, 1),
    (_create_key, 1), (_rotate_key, 3), (_revoke_key, 1), (_refused, 2),
    (_rename_account, 1),
)  # fmt: skip
HANDS = 10_000


def _mix(hands: float) -> tuple[list[Move], list[float]]:
    """The moves and cumulative weights when the team's share is scaled by ``hands`` (0 to 1)."""
    weighted = [(move, float(w)) for move, w in VOLUME] + [(move, w * hands) for move, w in TEAM]
    return [move for move, _ in weighted], list(accumulate(w for _, w in weighted))


# The first hour: the team sets the account up and tries every feature once.
ONBOARDING: tuple[Move, ...] = (
    _rename_account, _create_key, _refused,
    _add_domain, _add_domain, _add_domain, _edit_domain, _verify_domain, _remove_domain,
    _add_rule, _edit_rule, _disable_rule, _enable_rule, _remove_rule,
    _add_list, _add_contact, _add_contact, _add_contact, _edit_contact, _remove_contact, _import,
    _rename_list,
    _add_segment, _edit_segment, _add_broadcast, _add_broadcast, _add_broadcast, _edit_broadcast,
    _schedule, _unschedule, _send_now, _pause, _resume, _send_now, _pause, _archive_broadcast,
    _remove_broadcast, _add_segment, _remove_segment, _add_list, _remove_list,
    _suppress, _unsuppress, _rule_suppresses, _sign_in, _failed_sign_in, _sign_in, _sign_out,
    _invite_user, _change_role, _remove_user, _create_key, _rotate_key, _revoke_key,
    _hold, _hold, _stream_life,
)  # fmt: skip


def _setup(h: History, created: accounts.NewAccount) -> None:
    """The owner invites the team, connects integrations and adds rules; then the onboarding script runs."""
    h.join(Actor("session", created.owner.id, created.owner.email), "owner")
    with h.uow:
        _invite(h, "alice@example.com", "admin", guest=False)
        _invite(h, "bob@example.com", "member", guest=False)
        for name, scopes in (
            ("Zapier sync", ["full"]),
            ("CRM import", ["write"]),
            ("Reporting", ["activity:read"]),
        ):
            issued = api_keys.create_api_key(h.owner(), name=name, scopes=scopes)
            if "activity:read" not in scopes:
                h.join(Actor("api_key", issued.key.id, name))
        for template in RULES:
            _add_rule(h, template)
        for move in ONBOARDING:
            h.now += timedelta(seconds=h.rng.randint(20, 90))
            _until_logged(h, move)
        h.uow.commit()
    h.batch_done()


def _until_logged(h: History, move: Move, tries: int = 10) -> None:
    """Run ``move`` until it logs an entry (an update may pick the values a row already has: no entry)."""
    for _ in range(tries):
        before = h.done
        if not move(h):
            break
        if h.done > before:
            return
    raise RuntimeError(f"demo onboarding could not {move.__name__}")


def _advance(h: History, timeline: Timeline) -> None:
    """One entry's worth of history: a due scheduler/dispatcher step, or a weighted move by the team."""
    when = timeline.at(h.done + h.rng.random())
    if h.events and h.events[0][0] <= when:
        at, broadcast_id = heapq.heappop(h.events)
        if h.due.get(broadcast_id) == at:  # else unscheduled, paused or deleted since
            h.now = max(h.now, at)
            _due(h, broadcast_id)
        return
    h.now = max(h.now, when)
    moves, weights = h.mix
    while not h.rng.choices(moves, cum_weights=weights)[0](h):
        pass


def _unfinished(h: History) -> int:
    """Broadcasts a worker would pick up (sending, or scheduled): one entry each to wrap up."""
    return len(h.by_status[BroadcastStatus.SENDING]) + len(h.by_status[BroadcastStatus.SCHEDULED])


def _wrap_up(h: History) -> None:
    """Leave no work for the workers of a server on this database: the dispatcher finishes what is
    sending, and what is still scheduled is unscheduled (else a live scheduler would send it, and the
    dispatcher write thousands of messages to ``outbox/``, as soon as ``serve`` started)."""
    for broadcast_id in list(h.by_status[BroadcastStatus.SENDING]):
        _due(h, broadcast_id)
    for broadcast_id in list(h.by_status[BroadcastStatus.SCHEDULED]):
        h.set_status(broadcast_id, broadcasts.unschedule(h.admin(), broadcast_id).status)


def seed(
    db: Database, entries: int, seed_value: int = 7, show_progress: bool = False, leave_work: bool = False
) -> dict[str, str]:
    """Create the demo account and ``entries`` log entries (at least the onboarding's ~60) ending now;
    unless ``leave_work``, no broadcast is left sending or scheduled (see :func:`_wrap_up`)."""
    rng = random.Random(seed_value)  # noqa: S311  (made-up data, reproducible by design)
    end = datetime.now(UTC) - timedelta(minutes=1)
    start = end - HISTORY
    created = accounts.create_account(
        db, name="Demo Co", owner_email=DEMO_EMAIL, password=DEMO_PASSWORD, actor=SYSTEM_CLI,
        context=CLI_CONTEXT, clock=lambda: start,
    )  # fmt: skip
    h = History(db, created.account.id, rng, start)
    h.committed = 2  # account.create, user.create
    _setup(h, created)
    target = entries - 1  # the demo key below is the last entry
    h.hands = min(1.0, HANDS / entries)
    h.mix = _mix(h.hands)
    timeline = Timeline(h.now, end, h.done, target)
    columns = (
        TextColumn("seeding"),
        BarColumn(),
        MofNCompleteColumn(),
        EntriesPerSecond(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress) as progress:
        task = progress.add_task("seed", total=entries)
        # Wrapping up costs one entry per unfinished broadcast, and a step adds at most two to the sum
        # below, so stopping one short of the target leaves room for one filler entry at most.
        room = 0 if leave_work else 1
        while h.done < target and (leave_work or h.done + _unfinished(h) < target - room):
            with h.uow, batched(h.uow.session):
                stop = min(target, h.done + BATCH)
                while h.done < stop and (leave_work or h.done + _unfinished(h) < target - room):
                    _advance(h, timeline)
                h.uow.commit()
            h.batch_done()
            progress.update(task, completed=h.done)
        if leave_work and not _unfinished(h):  # asked to leave work: at least one send for the workers
            with h.uow:
                if h.broadcast_pick("schedule") is None:
                    _until_logged(h, _add_broadcast)
                _until_logged(h, _schedule)
                h.uow.commit()
            h.batch_done()
        if not leave_work:
            with h.uow:
                _wrap_up(h)
                while h.done < target:
                    _suppress(h)
                h.uow.commit()
            h.batch_done()
            progress.update(task, completed=h.done)
    _record_use(db, h.account_id)
    issued = _new_key(db, h.account_id, "Demo key")
    _refresh_statistics(db)
    return {"account_id": h.account_id, "email": DEMO_EMAIL, "password": DEMO_PASSWORD, "api_key": issued}


def _record_use(db: Database, account_id: str) -> None:
    """What signing in and authenticating would have noted: each key's last use (and from where) and each
    user's last sign-in, from the history's own entries. Bookkeeping fields, so no entry of their own."""
    last = (
        select(ActivityEntry.occurred_at, ActivityEntry.ip)
        .where(ActivityEntry.account_id == account_id)
        .order_by(ActivityEntry.seq.desc())
        .limit(1)
    )
    with db.for_account(account_id).writer() as session:
        for key in session.scalars(select(ApiKey).where(ApiKey.account_id == account_id)):
            used = session.execute(last.where(ActivityEntry.actor_id == key.id)).first()
            if used is not None:
                key.last_used_at, key.last_used_ip = used
        for user in session.scalars(select(User).where(User.account_id == account_id)):
            signed_in = session.execute(
                last.where(ActivityEntry.actor_id == user.id, ActivityEntry.action == "user.login")
            ).first()
            if signed_in is not None:
                user.last_login_at = signed_in.occurred_at
        session.commit()


class EntriesPerSecond(ProgressColumn):
    """How fast the history is being written, over rich's recent samples (the overall rate once done)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} entries/s" if speed else "- entries/s", style="progress.data.speed")


def _refresh_statistics(db: Database) -> None:
    """A bulk seed outruns autovacuum: without fresh statistics PostgreSQL plans as if the log were tiny
    and reads whole filters before sorting (bench/PAGES.md measured it). SQLite's ANALYZE is cheap too."""
    with db.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()


def _new_key(db: Database, account_id: str, name: str) -> str:
    uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=CLI_CONTEXT)
    return api_keys.create_api_key(uow, name=name, scopes=["full"]).secret


def _existing(db: Database) -> str | None:
    with db.reader() as session:
        return session.execute(select(User.account_id).where(User.email == DEMO_EMAIL)).scalar_one_or_none()


def demo(
    entries: int = typer.Option(3000, min=10, help="How many log entries to generate."),
    reuse: bool = typer.Option(
        False, "--reuse", help="If the demo account exists, only mint a fresh API key."
    ),
    seed_value: int = typer.Option(7, "--seed", help="Random seed, for a reproducible history."),
    leave_work: bool = typer.Option(
        False,
        "--leave-work",
        help="Leave some broadcasts sending or scheduled, for a server's workers to deliver (to outbox/).",
    ),
    port: int = typer.Option(8000, help="The port 'serve' will listen on, for the printed address."),
    no_migrate: bool = typer.Option(False, "--no-migrate", help="Do not apply migrations first."),
) -> None:
    """Seed a demo account with a realistic history; the last line is JSON with its login and an API key."""
    store = connect(Settings().database_url)
    if not no_migrate:
        upgrade(store)  # as serve does: a fresh database gets its tables
    db = store.system()
    account_id = _existing(db)
    if account_id is not None and reuse:
        key = _new_key(db, account_id, f"make run {datetime.now(UTC):%Y-%m-%d %H:%M}")
        result = {"account_id": account_id, "email": DEMO_EMAIL, "password": DEMO_PASSWORD, "api_key": key}
    elif account_id is not None:
        typer.echo(f"error: {DEMO_EMAIL} already exists; use --reuse or another database", err=True)
        raise typer.Exit(2)
    else:
        result = seed(db, entries, seed_value, show_progress=True, leave_work=leave_work)
    typer.echo(
        f"Demo account ready at http://127.0.0.1:{port}: sign in to the dashboard with "
        f"{result['email']} / {result['password']} (API docs at /docs); API key: {result['api_key']}"
    )
    typer.echo(json.dumps(result))
