"""``activitylog demo``: an account with a realistic history, made through the real services.

Every entry is produced by the same code paths as the API, with actors (users' sessions, API keys,
the CLI), source IPs and user agents varied, and a clock that walks forward over the last weeks. Actions are
batched into transactions of a few hundred so a million entries take minutes, not hours.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy import func, select

from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.models import (
    ActivityEntry,
    Broadcast,
    Contact,
    MailingList,
    ReputationRule,
    SendingDomain,
    User,
)
from activitylog.errors import DomainError
from activitylog.log.record import Actor, RequestContext
from activitylog.services import (
    accounts,
    api_keys,
    broadcasts,
    lists,
    reputation_rules,
    segments,
    sending_domains,
    suppressions,
    users,
)
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

DEMO_EMAIL = "demo@example.com"
DEMO_PASSWORD = "demo-password"  # noqa: S105  (a published demo login, not a secret)
BATCH = 250
AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
)
KEY_AGENTS = ("python-httpx/0.28", "Zapier/1.0", "curl/8.5.0", "node-fetch/3.3")
FIRST = "ada alan grace linus margaret ken barbara dennis frances john radia edsger".split()
LAST = "lovelace turing hopper torvalds hamilton thompson liskov ritchie allen backus perlman dijkstra".split()
TOPICS = "Spring picks|Summer sale|Weekly digest|Product update|Webinar invite|Holiday hours|New arrivals".split("|")


class History:
    """Drives the services as a team of people and integrations would, over simulated weeks."""

    def __init__(self, db: Database, account_id: str, rng: random.Random, start: datetime, step: timedelta):
        self.db, self.account_id, self.rng = db, account_id, rng
        self.now, self.step = start, step
        self.people: list[Actor] = []
        self.keys: list[Actor] = []
        self.ips: dict[str, list[str]] = {}
        self.uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(), clock=self.clock)

    def clock(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += timedelta(seconds=self.rng.expovariate(1 / self.step.total_seconds()))

    def act_as(self, actor: Actor) -> UnitOfWork:
        session = actor.type == "session"
        ip = self.rng.choice(self.ips[actor.id])
        agent = self.rng.choice(AGENTS if session else KEY_AGENTS)
        self.uow.actor = actor
        self.uow.context = RequestContext(ip=ip, user_agent=agent, request_id=f"demo-{self.rng.getrandbits(64):016x}")
        return self.uow

    def someone(self) -> UnitOfWork:
        return self.act_as(self.rng.choice(self.people + self.keys))

    def add_actor(self, actor: Actor, ips: list[str]) -> None:
        (self.people if actor.type == "session" else self.keys).append(actor)
        self.ips[actor.id] = ips

    def ids(self, model: type[Any], **where: Any) -> list[str]:
        stmt = select(model.id).where(model.account_id == self.account_id)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return list(self.uow.session.scalars(stmt))

    def pick(self, model: type[Any], **where: Any) -> str | None:
        found = self.ids(model, **where)
        return self.rng.choice(found) if found else None


def _ip_pool(rng: random.Random, n: int) -> list[str]:
    nets = ("203.0.113.", "198.51.100.", "192.0.2.")
    pool = [rng.choice(nets) + str(rng.randint(2, 254)) for _ in range(n)]
    if rng.random() < 0.4:
        pool.append(f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}")
    return pool


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _setup(h: History) -> None:
    """The team, its keys, domains and rules: every kind of actor appears early in the history."""
    rng, owner = h.rng, h.people[0]
    with h.act_as(owner) as uow:
        accounts.update_account(uow, name="Demo Outfitters")
        for email, role in (("alice@example.com", "admin"), ("bob@example.com", "member")):
            user = users.create_user(uow, email=email, password=DEMO_PASSWORD, role=role)
            h.add_actor(Actor("session", user.id, user.email), _ip_pool(rng, 3))
        for name, scopes in (("Zapier sync", ["full"]), ("CRM import", ["write"]), ("Reporting", ["activity:read"])):
            issued = api_keys.create_api_key(h.act_as(owner), name=name, scopes=scopes)
            if "activity:read" not in scopes:
                h.add_actor(Actor("api_key", issued.key.id, name), _ip_pool(rng, 2))
        for domain in ("mail.demo-outfitters.example", "news.demo-outfitters.example"):
            sending_domains.create_domain(h.act_as(owner), domain)
        rules = (
            ("Suppress hard bounces", {"event": "hard_bounce"}, "suppress_address"),
            ("Suppress complainers", {"event": "complaint"}, "suppress_address"),
            (
                "Pause on bounce spike",
                {"metric": "bounce_rate", "threshold": 0.05, "window_minutes": 60, "min_sends": 100},
                "pause_broadcast",
            ),
        )
        for name, condition, action in rules:
            reputation_rules.create_rule(h.act_as(owner), {"name": name, "condition": condition, "action": {"type": action}})
        lists.create_list(h.someone(), "Newsletter")
        uow.commit()


def _email(rng: random.Random) -> str:
    first, last = _person(rng)
    return f"{first}.{last}{rng.randint(1, 9999)}@{rng.choice(['example.com', 'example.org', 'example.net'])}"


def _step(h: History) -> None:
    """One plausible action, chosen by weight; impossible ones (e.g. pausing a draft) are skipped."""
    rng = h.rng
    kind = rng.choices(
        "contact import list segment broadcast suppress domain rule login key user".split(),
        weights=(30, 3, 3, 5, 25, 10, 4, 3, 12, 1, 1),
    )[0]
    list_id = h.pick(MailingList)
    if kind == "contact" and list_id:
        contact_id = h.pick(Contact)
        roll = rng.random()
        if contact_id and roll < 0.25:
            lists.update_contact(h.someone(), contact_id, {"first_name": _person(rng)[0], "status": rng.choice(["subscribed", "unsubscribed"])})
        elif contact_id and roll < 0.3:
            lists.delete_contact(h.someone(), contact_id)
        else:
            first, last = _person(rng)
            lists.create_contact(h.someone(), list_id, {"email": _email(rng), "first_name": first.title(), "last_name": last.title()})
    elif kind == "import" and list_id:
        rows = [{"email": _email(rng)} for _ in range(rng.randint(5, 40))]
        lists.import_contacts(h.act_as(rng.choice(h.keys)), list_id, rows)
    elif kind == "list":
        if list_id and rng.random() < 0.3:
            lists.update_list(h.someone(), list_id, {"name": f"{rng.choice(TOPICS)} subscribers"})
        else:
            lists.create_list(h.someone(), f"{rng.choice(['VIP', 'Leads', 'Customers', 'Beta'])} {rng.randint(1, 99)}")
    elif kind == "segment" and list_id:
        conditions = [{"field": "engaged_within_days", "op": "within", "value": rng.choice([7, 30, 90])}]
        segments.create_segment(h.someone(), {"name": f"Engaged {rng.randint(1, 999)}", "list_id": list_id, "conditions": conditions})
    elif kind == "broadcast":
        _broadcast_step(h, list_id)
    elif kind == "suppress":
        email = _email(rng)
        suppressions.suppress(h.someone(), email, rng.choice(["requested by recipient", "hard bounce", None]))
        if rng.random() < 0.15:
            suppressions.unsuppress(h.someone(), email)
    elif kind == "domain":
        domain_id = h.pick(SendingDomain)
        if domain_id and rng.random() < 0.5:
            sending_domains.update_domain(h.someone(), domain_id, {"return_path": f"bounce{rng.randint(1, 9)}.demo-outfitters.example"})
        elif domain_id:
            try:
                sending_domains.verify_domain(h.someone(), domain_id)
            except DomainError:
                sending_domains.update_domain(h.someone(), domain_id, {"dkim_selector": f"s{rng.randint(1, 99)}"})
    elif kind == "rule":
        rule_id = h.pick(ReputationRule)
        if rule_id:
            reputation_rules.set_enabled(h.someone(), rule_id, rng.random() < 0.5)
    elif kind == "login":
        person = rng.choice(h.people)
        uow = h.act_as(person)
        user = uow.session.get(User, person.id)
        if user is not None and rng.random() < 0.1:
            uow.record("user.login_failed", user, {}, actor=Actor("session", "anonymous", user.email))
        elif user is not None:
            uow.record("user.login" if rng.random() < 0.7 else "user.logout", user, {})
    elif kind == "key":
        key = rng.choice(h.keys)
        api_keys.rotate_api_key(h.act_as(h.people[0]), key.id)
    elif kind == "user":
        user = users.create_user(h.act_as(h.people[0]), email=f"temp{rng.getrandbits(32)}@example.com", password=DEMO_PASSWORD, role="member")
        users.update_user(h.act_as(h.people[0]), user.id, {"role": "admin"})
        users.delete_user(h.act_as(h.people[0]), user.id)


def _broadcast_step(h: History, list_id: str | None) -> None:
    rng = h.rng
    roll = rng.random()
    drafts, sending, paused = (h.ids(Broadcast, status=s) for s in ("draft", "sending", "paused"))
    scheduled = h.ids(Broadcast, status="scheduled")
    if paused and roll < 0.1:
        broadcasts.resume(h.someone(), rng.choice(paused))
    elif sending and roll < 0.25:
        broadcasts.pause(h.someone(), rng.choice(sending))
    elif scheduled and roll < 0.35:
        broadcasts.unschedule(h.someone(), rng.choice(scheduled))
    elif drafts and roll < 0.5:
        uow = h.someone()
        broadcasts.schedule(uow, rng.choice(drafts), h.now + timedelta(days=rng.randint(1, 5)))
    elif (drafts or scheduled) and roll < 0.7:
        broadcasts.send(h.someone(), rng.choice(drafts + scheduled))
    elif drafts and roll < 0.8:
        broadcasts.update_broadcast(h.someone(), rng.choice(drafts), {"subject": f"{rng.choice(TOPICS)}: {rng.randint(10, 60)}% off"})
    elif drafts and roll < 0.83:
        broadcasts.delete_broadcast(h.someone(), rng.choice(drafts))
    elif list_id:
        topic = rng.choice(TOPICS)
        broadcasts.create_broadcast(
            h.someone(),
            {"name": f"{topic} #{rng.randint(1, 999)}", "subject": topic, "from_email": "news@demo-outfitters.example", "list_id": list_id, "text": f"{topic} — read on."},
        )


def _existing(db: Database) -> str | None:
    with db.reader() as session:
        return session.execute(select(User.account_id).where(User.email == DEMO_EMAIL)).scalar_one_or_none()


def _count(db: Database, account_id: str) -> int:
    with db.reader() as session:
        return session.execute(
            select(func.count()).select_from(ActivityEntry).where(ActivityEntry.account_id == account_id)
        ).scalar_one()


def seed(db: Database, entries: int, seed_value: int = 7, show_progress: bool = False) -> dict[str, str]:
    rng = random.Random(seed_value)
    real_now = datetime.now(UTC)
    start = real_now - timedelta(days=42)
    step = timedelta(days=41) / max(entries, 1)
    created = accounts.create_account(
        db, name="Demo Co", owner_email=DEMO_EMAIL, password=DEMO_PASSWORD, actor=SYSTEM_CLI,
        context=RequestContext(user_agent="activitylog-cli"), clock=lambda: start,
    )
    account_id = created.account.id
    h = History(db, account_id, rng, start, step)
    h.add_actor(Actor("session", created.owner.id, created.owner.email), _ip_pool(rng, 3))
    _setup(h)
    with Progress(
        TextColumn("seeding"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not show_progress
    ) as progress:
        task = progress.add_task("seed", total=entries)
        done = _count(db, account_id)
        while done < entries:
            with h.uow:
                for _ in range(min(BATCH, entries - done)):
                    try:
                        h.tick()
                        with h.uow.session.begin_nested():
                            _step(h)
                    except DomainError:
                        continue
                h.uow.commit()
            done = _count(db, account_id)
            progress.update(task, completed=min(done, entries))
    issued = api_keys.create_api_key(
        UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(user_agent="activitylog-cli")),
        name="Demo key",
        scopes=["full"],
    )
    return {"account_id": account_id, "email": DEMO_EMAIL, "password": DEMO_PASSWORD, "api_key": issued.secret}


def demo(
    entries: int = typer.Option(3000, min=10, help="How many log entries to generate."),
    reuse: bool = typer.Option(False, "--reuse", help="If the demo account exists, only mint a fresh API key."),
    seed_value: int = typer.Option(7, "--seed", help="Random seed, for a reproducible history."),
) -> None:
    """Seed a demo account with a realistic history; the last line is JSON with its login and an API key."""
    db = connect(Settings().database_url)
    account_id = _existing(db) if reuse else None
    if account_id is not None:
        issued = api_keys.create_api_key(
            UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext(user_agent="activitylog-cli")),
            name=f"make run {datetime.now(UTC):%Y-%m-%d %H:%M}",
            scopes=["full"],
        )
        result = {"account_id": account_id, "email": DEMO_EMAIL, "password": DEMO_PASSWORD, "api_key": issued.secret}
    elif _existing(db) is not None:
        typer.echo(f"error: {DEMO_EMAIL} already exists; use --reuse or another database", err=True)
        raise typer.Exit(2)
    else:
        result = seed(db, entries, seed_value, show_progress=True)
    typer.echo("Demo account ready. Sign in at http://127.0.0.1:8000 with "
               f"{result['email']} / {result['password']}; API key: {result['api_key']}")
    typer.echo(json.dumps(result))
