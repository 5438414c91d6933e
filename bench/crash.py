"""Nothing lost on a crash: SIGKILL the server at random moments under concurrent writes, then prove that
every acknowledged mutation is stored with exactly one entry, and that every other attempt either fully
happened (change and entry) or left no trace.

For each engine: a fresh store, an account with one API key per client, ``activitylog serve`` as a child
process. ``--clients`` threads send real mutations (lists, contacts, suppressions, sending domains), each
with its own ``X-Request-ID`` so its entry can be found; the server is killed ``--kills`` times with
SIGKILL and started again. Then, with the server down:

- each attempt's entries (by request id): acknowledged → exactly one, with the right action, resource and
  new value; in flight when the server died → at most one, and right if there; never sent or refused → none;
- the log replayed in seq order must give exactly the rows in the database, and each entry's ``from`` must
  be the value the replay holds (so no change slipped in, or out, without its entry);
- ``activitylog verify`` must pass and seq must be gapless.

Writes bench/CRASH.md and exits 1 on any violation. ``python bench/crash.py --kills 20``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from activitylog.db.base import Database, connect
from activitylog.log.record import RequestContext
from activitylog.services import lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
from harness import ServerProcess, Tenant, fresh_store, make_tenant, verify_chains

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "CRASH.md"


@dataclass
class Attempt:
    """One mutation as the client saw it. ``outcome``: acked (2xx), refused (connection never made),
    lost (sent, no answer: the server died), rejected (a non-2xx answer)."""

    request_id: str
    key_id: str
    action: str
    resource_id: str | None  # unknown for a create that got no answer
    field: str | None = None
    value: str | None = None
    outcome: str = ""
    status: int | None = None


@dataclass
class Pools:
    """What one client believes exists. A resource whose fate is unknown (a create or delete with no
    answer) is dropped, so the client never acts on a guess."""

    home_list: str
    lists: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


class CrashClient(threading.Thread):
    """Sends mutations until told to stop, pausing while the server is down (``up`` clear)."""

    def __init__(
        self, number: int, base_url: str, key_id: str, secret: str, home_list: str, up: threading.Event
    ) -> None:
        super().__init__(daemon=True, name=f"crash-client-{number}")
        self.number = number
        self.label = f"c{number}"  # in request ids and names: one run, or phase, to the next must differ
        self.key_id = key_id
        self.up = up
        self.stop = threading.Event()
        self.pools = Pools(home_list)
        self.attempts: list[Attempt] = []
        self.random = random.Random(number)
        self.http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {secret}", "User-Agent": "activitylog-crash"},
            timeout=60,
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self.up.wait(0.5):
                    continue
                self.one()
        finally:
            self.http.close()

    def one(self) -> None:
        token = f"{self.label}n{len(self.attempts)}"
        kind = self.random.choice(("list", "contact", "address", "domain"))
        method, path, body, attempt = getattr(self, f"_{kind}")(token)
        self.attempts.append(attempt)
        try:
            response = self.http.request(
                method, path, json=body, headers={"X-Request-ID": attempt.request_id}
            )
        except httpx.ConnectError:
            attempt.outcome = "refused"
            return
        except httpx.TransportError:
            attempt.outcome = "lost"
            return
        attempt.status = response.status_code
        if not response.is_success:
            attempt.outcome = "rejected"
            return
        attempt.outcome = "acked"
        if attempt.resource_id is None:
            created = response.json()
            attempt.resource_id = created.get("id") or created.get("email")
            self._pool(attempt.action).append(str(attempt.resource_id))

    def _pool(self, action: str) -> list[str]:
        return {
            "list": self.pools.lists,
            "contact": self.pools.contacts,
            "address": self.pools.suppressed,
            "sending_domain": self.pools.domains,
        }[action.split(".")[0]]

    def _verb(self, pool: list[str]) -> str:
        if not pool:
            return "create"
        return self.random.choices(("create", "update", "delete"), weights=(4, 4, 2))[0]

    def _attempt(self, action: str, resource_id: str | None, name: str | None, value: str | None) -> Attempt:
        return Attempt(
            f"crash-{self.label}-{len(self.attempts)}", self.key_id, action, resource_id, name, value
        )

    def _take(self, pool: list[str]) -> str:
        """A resource to delete: out of the pool before the request, whatever the answer."""
        return pool.pop(self.random.randrange(len(pool)))

    def _list(self, token: str) -> tuple[str, str, Any, Attempt]:
        verb, name = self._verb(self.pools.lists), f"List {token}"
        if verb == "create":
            return "POST", "/api/v1/lists", {"name": name}, self._attempt("list.create", None, "name", name)
        if verb == "update":
            target = self.random.choice(self.pools.lists)
            body = {"name": name}
            return (
                "PATCH",
                f"/api/v1/lists/{target}",
                body,
                self._attempt("list.update", target, "name", name),
            )
        target = self._take(self.pools.lists)
        return "DELETE", f"/api/v1/lists/{target}", None, self._attempt("list.delete", target, None, None)

    def _contact(self, token: str) -> tuple[str, str, Any, Attempt]:
        verb = self._verb(self.pools.contacts)
        if verb == "create":
            body = {"email": f"{token}@crash.example", "first_name": token}
            path = f"/api/v1/lists/{self.pools.home_list}/contacts"
            return "POST", path, body, self._attempt("contact.create", None, "first_name", token)
        if verb == "update":
            target = self.random.choice(self.pools.contacts)
            attempt = self._attempt("contact.update", target, "first_name", token)
            return "PATCH", f"/api/v1/contacts/{target}", {"first_name": token}, attempt
        target = self._take(self.pools.contacts)
        return (
            "DELETE",
            f"/api/v1/contacts/{target}",
            None,
            self._attempt("contact.delete", target, None, None),
        )

    def _address(self, token: str) -> tuple[str, str, Any, Attempt]:
        if self.pools.suppressed and self.random.random() < 0.4:
            email = self._take(self.pools.suppressed)
            attempt = self._attempt("address.unsuppress", email, None, None)
            return "DELETE", f"/api/v1/suppressions/{email}", None, attempt
        email = f"s-{token}@crash.example"
        attempt = self._attempt("address.suppress", None, "email", email)
        return "POST", "/api/v1/suppressions", {"email": email, "reason": "crash test"}, attempt

    def _domain(self, token: str) -> tuple[str, str, Any, Attempt]:
        verb = self._verb(self.pools.domains)
        if verb == "create":
            domain = f"{token}.crash.example"
            attempt = self._attempt("sending_domain.create", None, "domain", domain)
            return "POST", "/api/v1/sending-domains", {"domain": domain}, attempt
        if verb == "update":
            target, value = self.random.choice(self.pools.domains), f"rp-{token}.crash.example"
            attempt = self._attempt("sending_domain.update", target, "return_path", value)
            return "PATCH", f"/api/v1/sending-domains/{target}", {"return_path": value}, attempt
        target = self._take(self.pools.domains)
        attempt = self._attempt("sending_domain.delete", target, None, None)
        return "DELETE", f"/api/v1/sending-domains/{target}", None, attempt


# ---- the checks

# What the replay compares: per resource type, its table, key column and the one field the clients change.
TRACKED = {
    "list": ("lists", "id", "name"),
    "contact": ("contacts", "id", "first_name"),
    "address": ("suppressions", "email", "reason"),
    "sending_domain": ("sending_domains", "id", "return_path"),
}


@dataclass
class Check:
    entries: int = 0
    matched: int = 0
    violations: list[str] = field(default_factory=list)
    unacked: Counter[str] = field(default_factory=Counter)

    def fail(self, message: str) -> None:
        self.violations.append(message)


def _entries(db: Database, account_id: str) -> list[dict[str, Any]]:
    sql = text(
        "SELECT seq, actor_id, action, resource_type, resource_id, changes, request_id"
        " FROM activity_entries WHERE account_id = :account ORDER BY seq"
    )
    with db.reader() as session:
        rows = [dict(row._mapping) for row in session.execute(sql, {"account": account_id})]
    for row in rows:
        row["changes"] = json.loads(row["changes"])
    return rows


def _rows(db: Database, account_id: str) -> dict[str, dict[str, Any]]:
    """The tracked tables as they are: {resource_type: {key: tracked value}}."""
    state: dict[str, dict[str, Any]] = {}
    with db.reader() as session:
        for kind, (table, key, column) in TRACKED.items():
            sql = text(f"SELECT {key}, {column} FROM {table} WHERE account_id = :account")
            state[kind] = {key: value for key, value in session.execute(sql, {"account": account_id})}
    return state


UNNAMED = object()  # a contact made by an import: its entry lists ids, not names


def _same(expected: Any, actual: Any) -> bool:
    return expected is UNNAMED or expected == actual


def _replay(entries: list[dict[str, Any]], check: Check) -> dict[str, dict[str, Any]]:
    """The tracked tables as the log says they must be; every ``from`` must be what the log said before."""
    state: dict[str, dict[str, Any]] = {kind: {} for kind in TRACKED}
    for entry in entries:
        kind, (_, _, column) = entry["resource_type"], TRACKED.get(entry["resource_type"], ("", "", ""))
        if kind not in TRACKED:
            continue
        rows, rid, change = state[kind], entry["resource_id"], entry["changes"].get(column)
        verb = entry["action"].split(".")[1]
        where = f"seq {entry['seq']} {entry['action']} {rid}"
        if entry["action"] == "list.import":
            for contact_id in entry["changes"]["contact_ids"]["to"]:
                state["contact"][contact_id] = UNNAMED
            continue
        if verb in ("create", "suppress"):
            if rid in rows:
                check.fail(f"{where}: created again while the log says it exists")
            rows[rid] = change["to"] if change else None
        elif verb == "update":
            if rid not in rows:
                check.fail(f"{where}: updates a resource the log says does not exist")
            elif change is not None and not _same(rows[rid], change["from"]):
                check.fail(f"{where}: changes {column} from {change['from']!r}, the log had {rows[rid]!r}")
            if change is not None:
                rows[rid] = change["to"]
        elif verb in ("delete", "unsuppress"):
            if rid not in rows:
                check.fail(f"{where}: removes a resource the log says does not exist")
            elif change is not None and not _same(rows[rid], change["from"]):
                check.fail(f"{where}: removes {column} {change['from']!r}, the log had {rows[rid]!r}")
            rows.pop(rid, None)
    return state


def _check_attempt(attempt: Attempt, found: list[dict[str, Any]], check: Check) -> None:
    who = f"{attempt.request_id} {attempt.action} ({attempt.outcome})"
    if attempt.outcome == "acked" and len(found) != 1:
        check.fail(f"{who}: acknowledged but has {len(found)} entries")
        return
    if attempt.outcome in ("refused", "rejected") and found:
        check.fail(f"{who}: {len(found)} entries for a request the server never carried out")
        return
    if len(found) > 1:
        check.fail(f"{who}: {len(found)} entries for one request")
        return
    if attempt.outcome != "acked":
        check.unacked[f"{attempt.outcome}, {'persisted' if found else 'no trace'}"] += 1
    if not found:
        return
    entry = found[0]
    changes = entry["changes"].get(attempt.field or "", {})
    if entry["action"] != attempt.action or entry["actor_id"] != attempt.key_id:
        check.fail(f"{who}: its entry is {entry['action']} by {entry['actor_id']}")
    elif attempt.resource_id is not None and entry["resource_id"] != attempt.resource_id:
        check.fail(f"{who}: its entry is on {entry['resource_id']}, not {attempt.resource_id}")
    elif attempt.field and attempt.field in ("name", "first_name", "return_path", "domain"):
        if changes.get("to") != attempt.value:
            check.fail(
                f"{who}: its entry sets {attempt.field} to {changes.get('to')!r}, not {attempt.value!r}"
            )
    elif attempt.action == "address.suppress" and entry["resource_id"] != attempt.value:
        check.fail(f"{who}: its entry is on {entry['resource_id']}, not {attempt.value}")
    check.matched += 1


def check_store(db: Database, account_id: str, attempts: list[Attempt]) -> Check:
    check = Check()
    entries = _entries(db, account_id)
    check.entries = len(entries)
    by_request: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if (entry["request_id"] or "").startswith("crash-"):
            by_request[entry["request_id"]].append(entry)
    sent = {attempt.request_id for attempt in attempts}
    for request_id in sorted(set(by_request) - sent):
        check.fail(f"{request_id}: an entry for a request no client sent")
    for attempt in attempts:
        _check_attempt(attempt, by_request.get(attempt.request_id, []), check)
    expected, actual = _replay(entries, check), _rows(db, account_id)
    for kind in TRACKED:
        for key in sorted(set(expected[kind]) | set(actual[kind])):
            if key not in actual[kind]:
                check.fail(
                    f"{kind} {key}: the log says it exists, the database has no row (entry without change)"
                )
            elif key not in expected[kind]:
                check.fail(f"{kind} {key}: in the database with no entry that made it (change without entry)")
            elif not _same(expected[kind][key], actual[kind][key]):
                said, has = expected[kind][key], actual[kind][key]
                check.fail(f"{kind} {key}: the log says {said!r}, the database has {has!r}")
    return check


# ---- one engine


@dataclass
class EngineResult:
    engine: str
    clients: int
    kills: int = 0
    seconds: float = 0.0
    restart_seconds: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: list[Attempt] = field(default_factory=list)
    check: Check = field(default_factory=Check)
    verify_ok: bool = False
    verify_output: str = ""
    seq_problems: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[str]:
        found = list(self.check.violations) + [f"seq: {p}" for p in self.seq_problems]
        if not self.verify_ok:
            found.append(f"activitylog verify failed: {self.verify_output}")
        return found


def _home_lists(db: Database, tenant: Tenant, clients: int) -> list[str]:
    """Each client's contacts live on a list no one deletes, made through the service as the CLI would."""
    homes = []
    for number in range(clients):
        uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
        homes.append(lists.create_list(uow, f"Home of client {number}").id)
    return homes


def _acked(workers: list[CrashClient]) -> int:
    return sum(1 for worker in workers for attempt in list(worker.attempts) if attempt.outcome == "acked")


def _wait_for_acks(workers: list[CrashClient], count: int, timeout: float = 120.0) -> None:
    target, deadline = _acked(workers) + count, time.monotonic() + timeout
    while _acked(workers) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} mutations acknowledged in {timeout:g} s")
        time.sleep(0.05)


def run_engine(
    engine: str,
    *,
    pg_url: str,
    kills: int,
    clients: int,
    up_seconds: tuple[float, float],
    min_acked: int = 10,
    seed: int | None = None,
    log: Any = print,
) -> EngineResult:
    """Kill the server ``kills`` times under ``clients`` writers, then check everything with it down.

    Each kill comes at a random moment ``up_seconds`` after the start, but never before ``min_acked``
    more mutations were acknowledged, so a slow, shared machine still gets real work between kills.
    """
    rng = random.Random(seed)
    result = EngineResult(engine, clients)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"activitylog-crash-{engine}-") as tmp:
        workdir = Path(tmp)
        with fresh_store(engine, pg_url, workdir) as store:
            db = connect(store.url)
            try:
                tenant = make_tenant(db, clients)
                homes = _home_lists(db, tenant, clients)
                server = ServerProcess(store, workdir)
                up = threading.Event()
                workers = [
                    CrashClient(n, server.url, key.id, key.secret, homes[n], up)
                    for n, key in enumerate(tenant.keys)
                ]
                try:
                    result.restart_seconds.append(server.start())
                    up.set()
                    for worker in workers:
                        worker.start()
                    for number in range(kills):
                        _wait_for_acks(workers, min_acked)
                        time.sleep(rng.uniform(*up_seconds))
                        up.clear()
                        server.kill()
                        sent = sum(len(w.attempts) for w in workers)
                        log(f"[{engine}] kill {number + 1}/{kills}: {sent} mutations sent so far")
                        if number + 1 < kills:  # the last kill stays down: the checks read what it left
                            result.restart_seconds.append(server.start())
                            up.set()
                finally:
                    for worker in workers:
                        worker.stop.set()
                    for worker in workers:
                        worker.join(timeout=90)
                    server.stop()
                result.kills = server.kills
                result.attempts = [attempt for worker in workers for attempt in worker.attempts]
                result.outcomes = Counter(attempt.outcome for attempt in result.attempts)
                result.check = check_store(db, tenant.account_id, result.attempts)
            finally:
                db.dispose()
            chains = verify_chains(store, workdir)
            result.verify_ok, result.verify_output = chains.ok, chains.output
            result.seq_problems = chains.seq_problems
    result.seconds = time.monotonic() - began
    return result


# ---- report


def summary(result: EngineResult) -> dict[str, str]:
    unacked = sum(count for outcome, count in result.outcomes.items() if outcome != "acked")
    restarts = sorted(result.restart_seconds)
    return {
        "kills survived (SIGKILL, server restarted)": str(result.kills),
        "concurrent clients": str(result.clients),
        "mutations attempted": f"{len(result.attempts):,}",
        "acknowledged (2xx)": f"{result.outcomes['acked']:,}",
        "unacknowledged": f"{unacked:,}",
        "… outcome": ", ".join(f"{k}: {v}" for k, v in sorted(result.check.unacked.items())) or "none",
        "log entries checked (whole chain)": f"{result.check.entries:,}",
        "attempts matched to their entry": f"{result.check.matched:,}",
        "activitylog verify": "ok" if result.verify_ok else "FAILED",
        "seq gaps / head drift": "none" if not result.seq_problems else "; ".join(result.seq_problems),
        "violations": str(len(result.violations)),
        "server start (median / max)": f"{restarts[len(restarts) // 2]:.2f} s / {restarts[-1]:.2f} s",
        "duration": f"{result.seconds:.1f} s",
    }


def write_markdown(results: list[EngineResult], argv: list[str], path: Path) -> None:
    engines = [r.engine for r in results]
    rows = list(summary(results[0]))
    table = [f"| | {' | '.join(engines)} |", "|---|" + "---|" * len(engines)]
    table += [f"| {row} | {' | '.join(summary(r)[row] for r in results)} |" for row in rows]
    lines = [
        "# Nothing lost on a crash",
        "",
        f"`python bench/crash.py {' '.join(argv)}`".replace("  ", " ").replace(" `", "`"),
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average at the end {os.getloadavg()[0]:.2f}"
        f" on {os.cpu_count()} cores.",
        "",
        "Concurrent API-key clients create, update and delete lists, contacts, suppressions and sending",
        "domains through the REST API of `activitylog serve` (a child process), each request with its own",
        "`X-Request-ID`; the server is killed with SIGKILL at random moments and started again. Afterwards:",
        "every acknowledged mutation has exactly one entry with its action, resource and new value; every",
        "unacknowledged one has one such entry or none; a refused connection has none; replaying the log",
        "in seq order gives exactly the rows in the database (and each entry's `from` is the value before",
        "it); `activitylog verify` passes; seq runs 1..N with the head on N. *refused*: the connection was",
        "never made (server down); *lost*: sent, no answer (the server died with it in flight).",
        "",
        *table,
        "",
    ]
    for result in results:
        if result.violations:
            lines += [
                f"## Violations on {result.engine}",
                "",
                *[f"- {v}" for v in result.violations[:50]],
                "",
            ]
    path.write_text("\n".join(lines))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per engine (20)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent writing clients (8)")
    parser.add_argument("--min-up", type=float, default=0.3, help="shortest time between start and kill, s")
    parser.add_argument("--max-up", type=float, default=2.5, help="longest time between start and kill, s")
    parser.add_argument("--min-acked", type=int, default=10, help="acknowledged mutations before a kill")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    parser.add_argument("--seed", type=int, help="seed for the kill moments")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file (bench/CRASH.md)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        result = run_engine(
            engine,
            pg_url=args.pg_url,
            kills=args.kills,
            clients=args.clients,
            up_seconds=(args.min_up, args.max_up),
            min_acked=args.min_acked,
            seed=args.seed,
        )
        results.append(result)
        print(f"\n## {engine}")
        for name, value in summary(result).items():
            print(f"{name}: {value}")
        for violation in result.violations[:50]:
            print(f"VIOLATION: {violation}")
    write_markdown(results, argv, args.output)
    print(f"\nwrote {args.output}")
    return 1 if any(result.violations for result in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
