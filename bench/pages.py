"""``make bench-pages``: every dashboard page timed at a demo account of 100,000 entries, on both engines.

The dashboard must answer each page in under 300 ms at that size. For each engine this builds a throw-away
database with the real migrations (a SQLite file under bench/data/, a ``CREATE DATABASE
activitylog_bench_<random>`` on PostgreSQL, dropped afterwards), seeds it with ``activitylog demo --entries
N`` (the real services, so the account has lists, contacts, broadcasts, domains, keys, rules and users as well
as the log), starts the server as ``make run`` does, signs in through the form and times every page kind
with httpx: wall time until the whole body has arrived, ``--reps`` times after one warm-up. The Export CSV
link of a filtered view is timed separately, as rows per second. Results: bench/PAGES.md.

    .venv/bin/python bench/pages.py [--entries 100000] [--engine sqlite|postgresql|both] [--reps 20]
"""

from __future__ import annotations

import argparse
import csv
import html
import io
import ipaddress
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import psycopg

from activitylog.log.query import decode_cursor, page_rows, parse_filter
from activitylog.web.dashboard.activity import PAGE_SIZE, resolve_window
from activitylog.web.deps import SESSION_COOKIE

# isort: split
# Sibling modules of bench/ (this runs as a script, so they import as top-level modules).
import appsql
import explain
from queries import Raw
from server import DATA_DIR, serve
from stores import Store, counts_at_head, describe, detectors_at_head, postgres_store, sqlite_store

BUDGET_MS = 300.0  # what every page must stay under
SQL_SHARE = 0.1  # an activity page whose SQL alone takes over this share of the budget gets its plan shown
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "PAGES.md"
RESOURCE_PAGES = (
    "broadcasts",
    "lists",
    "segments",
    "suppressions",
    "sending-domains",
    "reputation-rules",
    "api-keys",
    "users",
)
COMMON_WORD = "contact"  # in most summaries ("Created contact …") and resource types
RARE_WORD = "rotated"  # only in "Rotated API key …": a handful of entries, so the search reads far
LOAD_MORE_PAGES = 20  # 20 "Load more" clicks of 50 entries: 1,000 entries deep
ENGINES = ("sqlite", "postgresql")


# --- what was measured ----------------------------------------------------------------------------------


@dataclass
class Timing:
    """One page's timed requests, in milliseconds, and the size of its body."""

    label: str
    url: str
    samples: list[float]
    size: int
    cpu_ms: float  # serving-side CPU per request (server process + PostgreSQL backends)

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        """Nearest rank: with 20 requests, the 19th fastest."""
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]

    @property
    def max(self) -> float:
        return max(self.samples)


@dataclass
class Export:
    url: str
    rows: int
    size: int
    seconds: list[float]

    @property
    def rows_per_second(self) -> float:
        return self.rows / statistics.median(self.seconds)


@dataclass
class EngineRun:
    engine: str
    info: dict[str, str]
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    fixtures: dict[str, str] = field(default_factory=dict)  # what each filter was set to, and why
    pages: list[Timing] = field(default_factory=list)
    export: Export | None = None
    queries: list[QueryAlone] = field(default_factory=list)
    code: str = ""  # the commit the server imported (the checkout may move during a run)


# --- the database and the demo account ------------------------------------------------------------------


def _cli() -> list[str]:
    """The installed ``activitylog`` command of this interpreter's environment."""
    beside = Path(sys.executable).with_name("activitylog")
    found = str(beside) if beside.exists() else shutil.which("activitylog")
    if not found:
        raise SystemExit("the activitylog command is not installed (pip install -e .)")
    return [found]


class Seeding:
    """``activitylog demo --entries N`` running on one store in its own process; both engines seed at once.

    Its output goes to a file under bench/data/; the last line is JSON with the account and its login.
    """

    def __init__(self, store: Store, entries: int) -> None:
        env = {
            **os.environ,
            "ACTIVITYLOG_DATABASE_URL": store.url,
            "ACTIVITYLOG_SIGNING_KEY_FILE": str(DATA_DIR / "bench-signing.key"),
        }
        DATA_DIR.mkdir(exist_ok=True)
        self.output = DATA_DIR / f"pages-demo-{store.engine}.out"
        self.began = time.perf_counter()
        self.seconds = 0.0
        with self.output.open("w") as out:
            self.proc = subprocess.Popen([*_cli(), "demo", "--entries", str(entries)], env=env, stdout=out)
        self._watch = threading.Thread(target=self._time, daemon=True)
        self._watch.start()

    def _time(self) -> None:
        self.proc.wait()
        self.seconds = time.perf_counter() - self.began

    def login(self) -> dict[str, Any]:
        """Wait for the demo to finish; its login (account_id, email, password, api_key)."""
        self._watch.join()
        if self.proc.returncode != 0:
            raise RuntimeError(f"activitylog demo exited with {self.proc.returncode}; see {self.output}")
        result: dict[str, Any] = json.loads(self.output.read_text().strip().splitlines()[-1])
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- the account's data: filter values taken from what is really there ----------------------------------


class Facts:
    """Plain SQL on the seeded account: its size and the values that make each filter realistic."""

    def __init__(self, store: Store, account_id: str) -> None:
        self.store, self.account_id = store, account_id
        self.conn = store.raw_connect()
        if not store.is_sqlite:
            self.conn.autocommit = True  # pg_stat_activity is a per-transaction snapshot

    def backend_pids(self) -> list[int]:
        """PostgreSQL: the server processes serving the application's connections to this database."""
        if self.store.is_sqlite:
            return []
        sql = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [int(r[0]) for r in self.conn.execute(sql).fetchall()]

    def close(self) -> None:
        self.conn.close()

    def rows(self, sql: str, *args: Any) -> list[Any]:
        return list(self.conn.execute(self.store.sql(sql), (self.account_id, *args)).fetchall())

    def scalar(self, sql: str, *args: Any) -> Any:
        return self.rows(sql, *args)[0][0]

    def counts(self) -> dict[str, int]:
        tables: tuple[str, ...] = ("activity_entries", "users", "api_keys", "lists", "contacts", "segments")
        tables += ("broadcasts", "suppressions", "sending_domains", "reputation_rules")
        return {t: int(self.scalar(f"SELECT count(*) FROM {t} WHERE account_id = ?")) for t in tables}

    def head(self) -> int:
        return int(self.scalar("SELECT max(seq) FROM activity_entries WHERE account_id = ?"))

    def busiest_user(self) -> tuple[str, int]:
        row = self.rows(
            "SELECT actor_id, count(*) FROM activity_entries WHERE account_id = ? AND actor_type = 'session' "
            "GROUP BY actor_id ORDER BY count(*) DESC, actor_id LIMIT 1"
        )[0]
        return str(row[0]), int(row[1])

    def busiest_resource(self) -> tuple[str, str, int]:
        """The account resource (not a user or the account itself) with the most entries."""
        row = self.rows(
            "SELECT resource_type, resource_id, count(*) FROM activity_entries WHERE account_id = ? "
            "AND resource_type NOT IN ('user', 'account') "
            "GROUP BY resource_type, resource_id ORDER BY count(*) DESC, resource_id LIMIT 1"
        )[0]
        return str(row[0]), str(row[1]), int(row[2])

    def busiest_network(self) -> tuple[str, int]:
        """The /24 (or /64) block with the most entries."""
        blocks: Counter[str] = Counter()
        for ip, n in self.rows(
            "SELECT ip, count(*) FROM activity_entries WHERE account_id = ? AND ip IS NOT NULL GROUP BY ip"
        ):
            address = ipaddress.ip_address(ip)
            prefix = 24 if address.version == 4 else 64
            blocks[str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))] += int(n)
        block, n = blocks.most_common(1)[0]
        return block, n

    def matching(self, word: str) -> int:
        pattern = f"%{word.lower()}%"
        return int(
            self.scalar(
                "SELECT count(*) FROM activity_entries WHERE account_id = ? AND (lower(summary) LIKE ? "
                "OR lower(coalesce(resource_name, '')) LIKE ? OR lower(coalesce(actor_name, '')) LIKE ?)",
                pattern,
                pattern,
                pattern,
            )
        )

    def where_count(self, condition: str, *args: Any) -> int:
        return int(
            self.scalar(f"SELECT count(*) FROM activity_entries WHERE account_id = ? AND {condition}", *args)
        )

    def entry_with_diff(self) -> int:
        """A recent broadcast edit: an entry page with a field-level diff to render."""
        return int(
            self.scalar(
                "SELECT max(seq) FROM activity_entries WHERE account_id = ? AND action = 'broadcast.update'"
            )
        )


# --- the pages ------------------------------------------------------------------------------------------


def sign_in(client: httpx.Client, email: str, password: str) -> None:
    """The form, as a browser posts it; the session cookie stays in the client."""
    response = client.post("/sign-in", data={"email": email, "password": password, "next": "/activity"})
    if response.status_code != 303 or SESSION_COOKIE not in client.cookies:
        raise RuntimeError(f"sign-in failed: {response.status_code} {response.text[:200]}")
    fetch(client, "/activity")


def fetch(client: httpx.Client, url: str) -> httpx.Response:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
    return response


def attribute_href(page: str, attribute: str) -> str | None:
    """The href of the first link carrying ``attribute`` (``data-load-more``)."""
    for tag in re.findall(r"<a\b[^>]*>", page):
        if re.search(rf"\s{attribute}(?=[\s>=])", tag):
            found = re.search(r'href="([^"]*)"', tag)
            if found:
                return html.unescape(found.group(1))
    return None


def export_action(page: str, view: dict[str, str]) -> str | None:
    """Where the Export CSV button (``data-export``) sends the filter form of the view it is on: its
    ``formaction`` with the view's filters (the route drops the form's empty fields itself)."""
    for tag in re.findall(r"<button\b[^>]*>", page):
        if re.search(r"\sdata-export(?=[\s>=])", tag):
            found = re.search(r'formaction="([^"]*)"', tag)
            if found:
                return html.unescape(found.group(1)) + "?" + urlencode(view)
    return None


def first_row_link(page: str, slug: str) -> str | None:
    """The first link into one row of a list page (``/lists/lst_…``)."""
    found = re.search(rf'href="(/{re.escape(slug)}/[^"/?#]+)"', page)
    return html.unescape(found.group(1)) if found else None


def history_href(page: str) -> str | None:
    found = re.search(r'href="(/activity\?resource_type=[^"]*resource_id=[^"]*)"', page)
    return html.unescape(found.group(1)) if found else None


def with_fragment(url: str) -> str:
    return url + ("&" if "?" in url else "?") + "fragment=1"


def activity(**params: str) -> str:
    return "/activity?" + urlencode(params) if params else "/activity"


def plan_pages(client: httpx.Client, facts: Facts, fixtures: dict[str, str]) -> list[tuple[str, str]]:
    """Every page kind as (label, URL), with filter values and ids taken from the account itself."""
    user, user_entries = facts.busiest_user()
    rtype, rid, r_entries = facts.busiest_resource()
    block, block_entries = facts.busiest_network()
    common, rare = facts.matching(COMMON_WORD), facts.matching(RARE_WORD)
    fixtures["actor"] = f"`{user}`, the busiest user ({user_entries:,} entries)"
    updates = facts.where_count("action LIKE ?", "%.update")
    sends = facts.where_count("action LIKE ?", "broadcast.%")
    contacts = facts.where_count("resource_type = ?", "contact")
    fixtures["action=update"] = f"{updates:,} entries"
    fixtures["action=broadcast.*"] = f"{sends:,} entries"
    fixtures["resource_type"] = f"`contact`, {contacts:,} entries"
    fixtures["busy resource"] = f"`{rtype}` `{rid}` ({r_entries:,} entries)"
    fixtures["ip"] = f"`{block}`, the busiest block ({block_entries:,} entries)"
    fixtures["q"] = f"common `{COMMON_WORD}` ({common:,} entries), rare `{RARE_WORD}` ({rare:,} entries)"

    pages: list[tuple[str, str]] = [
        ("/activity", "/activity"),
        ("/activity actor", activity(actor=user)),
        ("/activity action verb", activity(action="update")),
        ("/activity action wildcard", activity(action="broadcast.*")),
        ("/activity resource_type", activity(resource_type="contact")),
        ("/activity resource_type+resource_id", activity(resource_type=rtype, resource_id=rid)),
        ("/activity window=24h", activity(window="24h")),
        ("/activity window=30d", activity(window="30d")),
        ("/activity ip /24", activity(ip=block)),
        ("/activity q common", activity(q=COMMON_WORD)),
        ("/activity q rare", activity(q=RARE_WORD)),
        ("/activity actor+action+window", activity(actor=user, action="update", window="30d")),
    ]
    pages.append(("/activity load more, 1,000 deep", load_more_url(client, facts, fixtures)))
    seq = facts.entry_with_diff()
    fixtures["entry"] = f"seq {seq:,} (a `broadcast.update` with a diff)"
    pages.append(("/activity/{seq}", f"/activity/{seq}"))
    details: list[tuple[str, str]] = []
    history: str | None = None
    for slug in RESOURCE_PAGES:
        pages.append((f"/{slug}", f"/{slug}"))
        listing = fetch(client, f"/{slug}").text
        link = first_row_link(listing, slug)
        if link is None:
            fixtures[f"/{slug}/{{id}}"] = "no row on the list page: not measured"
            continue
        details.append((f"/{slug}/{{id}}", link))
        if slug == "broadcasts":
            history = history_href(fetch(client, link).text)
            fixtures["history"] = f"the History link of `{link}`"
    pages += details
    if history:
        pages.append(("resource history (History link)", history))
    pages.append(("/sign-in", "/sign-in"))
    return pages


def load_more_url(client: httpx.Client, facts: Facts, fixtures: dict[str, str]) -> str:
    """Follow the page's ``data-load-more`` link 20 times, as the button would; the next one is measured."""
    url = attribute_href(fetch(client, "/activity").text, "data-load-more")
    for _ in range(LOAD_MORE_PAGES - 1):
        if url is None:
            break
        url = attribute_href(fetch(client, with_fragment(url)).text, "data-load-more")
    if url is None:
        raise RuntimeError("no data-load-more link 1,000 entries deep: --entries must be over 1,050")
    cursor = parse_qs(urlsplit(url).query).get("cursor", [""])[0]
    before = decode_cursor(cursor)
    head = facts.head()
    fixtures["load more"] = (
        f"the {LOAD_MORE_PAGES}th `data-load-more` link followed from `/activity` (entries below seq "
        f"{before:,}, head {head:,}), timed with `fragment=1` as the button asks for it"
    )
    return with_fragment(url)


def cpu_ms(pids: list[int]) -> dict[int, float]:
    """User + system CPU time so far of each process (from ``/proc/<pid>/stat``), in milliseconds."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) * tick_ms  # utime, stime
    return out


def time_page(client: httpx.Client, label: str, url: str, reps: int, pids: Callable[[], list[int]]) -> Timing:
    """One warm-up, then ``reps`` requests, each timed until the full body has been read.

    Also the CPU the requests cost on the serving side (the server process and, on PostgreSQL, the database's
    backends), per request: on a shared machine the wall time includes waiting for a core, the CPU does not.
    """
    size = len(fetch(client, url).content)
    watched = pids()
    before = cpu_ms(watched)
    samples = []
    for _ in range(reps):
        began = time.perf_counter()
        response = client.get(url)
        body = response.content
        samples.append((time.perf_counter() - began) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET {url}: {response.status_code}")
        size = len(body)
    after = cpu_ms(watched)
    spent = sum(after[p] - before[p] for p in after if p in before)
    return Timing(label, url, samples, size, spent / reps)


def time_export(client: httpx.Client, url: str, runs: int) -> Export:
    """The Export CSV link: a download, so reported as rows per second (rows counted by a CSV parser)."""
    seconds: list[float] = []
    rows = size = 0
    for _ in range(runs):
        began = time.perf_counter()
        with client.stream("GET", url, follow_redirects=True) as response:  # as the browser, to the API's
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code}")
            body = response.read()
        seconds.append(time.perf_counter() - began)
        size = len(body)
        rows = sum(1 for _ in csv.reader(io.StringIO(body.decode()))) - 1  # minus the header
    return Export(url, rows, size, seconds)


# --- where an activity page's time goes: its SQL alone -------------------------------------------------


@dataclass
class QueryAlone:
    """The statements behind one activity page, run on the bare driver: time, matches and, if the page was
    over budget, the plan."""

    label: str
    matches: int
    samples: list[float]
    plan: str | None

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)


def query_alone(
    store: Store, account_id: str, label: str, url: str, *, explain_over: float | None
) -> QueryAlone:
    """The page's filter as the dashboard turns it into SQL (``window`` becomes ``since``), captured from
    the product's own query layer (``appsql``), then timed without the web stack: 1 warm-up, 5 runs; with
    its plan if the page was over budget (``explain_over`` None) or the SQL alone took over that many ms."""
    params = {k: v for k, v in parse_qsl(urlsplit(url).query) if k not in ("fragment", "window")}
    window = dict(parse_qsl(urlsplit(url).query)).get("window")
    if window and "since" not in params:
        params["since"] = resolve_window(window, datetime.now(UTC)) or ""
    f = parse_filter(**{k: v for k, v in params.items() if k in appsql.FILTER_PARAMS})
    before = decode_cursor(params.get("cursor"))
    db = store.app_db()
    try:
        statements = appsql._capture(  # what the dashboard's page_rows sends: one statement, or a few
            db,
            lambda session: page_rows(
                session, account_id, f, dialect=db.dialect, before_seq=before, limit=PAGE_SIZE
            ),
        )
        matches = appsql.matching(db, account_id, params)
    finally:
        db.dispose()
    raw = Raw(store)

    def run_all() -> None:
        for statement in statements:
            raw.conn.execute(statement.sql, statement.params).fetchall()

    try:
        run_all()
        samples = []
        for _ in range(5):
            began = time.perf_counter()
            run_all()
            samples.append((time.perf_counter() - began) * 1000)
        slow = explain_over is None or statistics.median(samples) > explain_over
        plan = explain.plan(raw.conn, store, statements).custom if slow else None
    finally:
        raw.close()
    return QueryAlone(label, matches, samples, plan)


# --- one engine -----------------------------------------------------------------------------------------


def bench_engine(
    store: Store, seeding: Seeding, args: argparse.Namespace, log: Callable[[str], None], label: str
) -> EngineRun:
    login = seeding.login()
    run = EngineRun(label, describe(store), os.getloadavg(), seed_seconds=seeding.seconds)
    if not store.is_sqlite:
        run.info["autovacuum"] = settings(store, "autovacuum")
        run.info["activity_entries last analyzed"] = last_analyzed(store)
    log(f"seeded in {run.seed_seconds:.0f} s; serving")
    facts = Facts(store, login["account_id"])
    run.code = _code()
    try:
        run.counts = facts.counts()
        # as the served worker keeps them: the pages measured in its steady state, not its first count
        counts_at_head(store)
        detectors_at_head(store)
        with (
            serve(store.url) as server,
            httpx.Client(
                base_url=server.url, timeout=120, headers={"User-Agent": "activitylog-bench"}
            ) as client,
        ):
            sign_in(client, login["email"], login["password"])
            pages = plan_pages(client, facts, run.fixtures)
            for label, url in pages:
                timing = time_page(
                    client, label, url, args.reps, lambda: [*server.web_pids(), *facts.backend_pids()]
                )
                run.pages.append(timing)
                flag = "  OVER" if timing.p95 > args.budget else ""
                log(
                    f"{label:38} p50 {timing.p50:6.1f}  p95 {timing.p95:6.1f}  max {timing.max:6.1f}  "
                    f"cpu {timing.cpu_ms:5.1f} ms{flag}"
                )
            export = export_action(fetch(client, activity(window="30d")).text, {"window": "30d"})
            if export is None:
                raise RuntimeError("the filtered activity page has no data-export button")
            run.fixtures["export"] = "the Export CSV link of `/activity?window=30d`"
            run.export = time_export(client, export, args.export_runs)
            log(f"export: {run.export.rows:,} rows, {run.export.rows_per_second:,.0f} rows/s")
        run.load_end = os.getloadavg()
        log("the SQL behind each activity page, alone on the bare driver")
        run.queries = [
            query_alone(
                store,
                login["account_id"],
                t.label,
                t.url,
                explain_over=None if t.p95 > args.budget else args.budget * SQL_SHARE,
            )
            for t in run.pages
            if urlsplit(t.url).path == "/activity" and urlsplit(t.url).query
        ]
    finally:
        facts.close()
    return run


# --- the report -----------------------------------------------------------------------------------------


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _code() -> str:
    """The commit measured, and whether src/ had uncommitted changes (the checkout may be shared)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"`{head}`" + (
        f", with uncommitted changes to {', '.join(changed)}" if changed else ", src/ clean"
    )


def _load(load: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in load)


def _cell(timing: Timing | None, budget: float) -> str:
    if timing is None:
        return "—"
    figures = f"{timing.p50:.0f} / {timing.p95:.0f} / {timing.max:.0f}"
    return f"**{figures} ✗**" if timing.p95 > budget else figures


def render(runs: list[EngineRun], args: argparse.Namespace, started: datetime, load_start: Any) -> str:
    engines = [r.engine for r in runs]
    command = " ".join(["bench/pages.py", *args.argv])
    code = args.code
    out = [
        "# Dashboard pages at a demo account",
        "",
        "Written by `make bench-pages` (`bench/pages.py`); do not edit by hand. Every dashboard page is asked"
        f" for by a signed-in browser session (a cookie from `POST /sign-in`), {args.reps} times after one "
        "warm-up, one request at a time over loopback HTTP/1.1 to `activitylog serve` started as `make run` "
        "starts it (a web process per CPU, the worker beside them, its derived counts and alert detectors "
        "first brought to the demo's head); the time is"
        " the client's wall time until the whole body has arrived. The budget is "
        f"**{args.budget:.0f} ms per page**; a cell in bold with ✗ has its p95 over it.",
        "",
        "## Setup",
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC; command: `{command}`; code at the start: {code}",
        f"- machine: {os.cpu_count()} CPUs (`nproc` {len(os.sched_getaffinity(0))}), {_cpu()}, Python "
        f"{platform.python_version()}, shared with other work (see the load averages)",
        f"- load average (1/5/15 min): {_load(load_start)} at the start, {_load(os.getloadavg())} at the end",
        f"- seeding: `activitylog demo --entries {args.entries}` (the real services in batches of 1,000: a "
        "six-week history with sessions, API keys, rules, the scheduler and dispatcher as actors, and the "
        "lists, contacts, broadcasts, domains, keys, rules and users it leaves behind), both engines at once",
        "- PostgreSQL is timed twice: as the demo left it (planner statistics only if something analyzed "
        "the tables: see `autovacuum` and `activity_entries last analyzed` under Engines), then after an "
        "explicit `ANALYZE`, as a server with autovacuum on has it",
    ]
    for run in runs:
        version = run.info.get("version", run.engine)
        counts = ", ".join(f"{n:,} {t}" for t, n in run.counts.items() if t != "activity_entries")
        out.append(
            f"- **{run.engine}** ({version}): {run.counts.get('activity_entries', 0):,} log entries in the "
            f"account; {counts}; "
            f"seeded in {run.seed_seconds:.0f} s; load {_load(run.load_start)} → {_load(run.load_end)}; "
            f"code {run.code}"
        )
    out += [
        "",
        "## Pages",
        "",
        "Wall time p50 / p95 / max in milliseconds. CPU: what the serving side spent per request (user +"
        " system time of the server process and, on PostgreSQL, of the database's backends, from /proc, over"
        f" the {args.reps} timed requests, in clock ticks of 10 ms): on a shared machine the wall time"
        " includes waiting for a core, the CPU does not. Size: the body as sent (uncompressed).",
        "",
    ]
    header = " | ".join(f"{e} p50 / p95 / max | {e} CPU" for e in engines)
    out.append(f"| page | {header} | size | URL ({engines[0]}) |")
    out.append("|---|" + "---|---:|" * len(engines) + "---:|---|")
    labels = list(dict.fromkeys(t.label for r in runs for t in r.pages))
    for label in labels:
        found = [next((t for t in r.pages if t.label == label), None) for r in runs]
        first = next(t for t in found if t is not None)
        url = first.url if len(first.url) <= 90 else first.url[:87] + "…"
        out.append(
            f"| {label} | "
            + " | ".join(f"{_cell(t, args.budget)} | {f'{t.cpu_ms:.1f}' if t else '—'}" for t in found)
            + f" | {first.size / 1024:.0f} KiB | `{url}` |"
        )
    over = [(r.engine, t) for r in runs for t in r.pages if t.p95 > args.budget]
    out += ["", f"Pages over {args.budget:.0f} ms at p95: " + (str(len(over)) if over else "none") + "."]
    for engine, timing in over:
        out.append(f"- {engine}: {timing.label} (p95 {timing.p95:.0f} ms)")
    out += ["", "## Export CSV (a download, not a page)", ""]
    out.append("| engine | rows | size | seconds (median of runs) | rows/s |")
    out.append("|---|---:|---:|---:|---:|")
    for run in runs:
        if run.export:
            e = run.export
            out.append(
                f"| {run.engine} | {e.rows:,} | {e.size / 2**20:.1f} MiB | "
                f"{statistics.median(e.seconds):.2f} ({len(e.seconds)} runs) | {e.rows_per_second:,.0f} |"
            )
    out += sql_alone_section(runs, args.budget)
    out += ["", "## What each filter was set to", ""]
    for run in runs:
        out.append(f"- {run.engine}: " + "; ".join(f"{k}: {v}" for k, v in run.fixtures.items()))
    out += ["", "## Engines", ""]
    for run in runs:
        out.append(f"- {run.engine}: " + ", ".join(f"{k} {v}" for k, v in run.info.items()))
    return "\n".join(out) + "\n"


def sql_alone_section(runs: list[EngineRun], budget: float) -> list[str]:
    """Page time beside the time of its SQL alone, so what is left is the web stack and the template."""
    engines = [r.engine for r in runs if r.queries]
    if not engines:
        return []
    out = [
        "",
        "## Activity pages: the SQL alone",
        "",
        "The statements each activity page runs (captured from the product's query layer, `window` turned "
        "into `since`), timed on the bare driver (median of 5 after a warm-up), beside the page's p50. "
        "Matches: entries the filter selects in all (the page shows 50). The plans follow for pages over "
        f"budget and for SQL over {budget * SQL_SHARE:.0f} ms.",
        "",
        "| page | " + " | ".join(f"{e} page p50 / SQL p50 (ms) | {e} matches" for e in engines) + " |",
        "|---|" + "---:|---:|" * len(engines),
    ]
    labels = list(dict.fromkeys(q.label for r in runs for q in r.queries))
    for label in labels:
        cells = []
        for run in runs:
            if not run.queries:
                continue
            query = next((q for q in run.queries if q.label == label), None)
            timing = next((t for t in run.pages if t.label == label), None)
            if query is None or timing is None:
                cells += ["—", "—"]
                continue
            cells += [f"{timing.p50:.0f} / {query.p50:.1f}", f"{query.matches:,}"]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    for run in runs:
        for query in run.queries:
            if query.plan:
                timing = next(t for t in run.pages if t.label == query.label)
                why = "page over budget" if timing.p95 > budget else f"its SQL alone {query.p50:.0f} ms"
                out += [
                    "",
                    f"Plan of **{query.label}** on {run.engine} ({why}):",
                    "",
                    "```",
                    query.plan,
                    "```",
                ]
    return out


# --- main -----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--entries", type=int, default=100_000, help="log entries in the demo account (100000)"
    )
    parser.add_argument("--engine", choices=(*ENGINES, "both"), default="both", help="which store (both)")
    parser.add_argument("--reps", type=int, default=20, help="timed requests per page after a warm-up (20)")
    parser.add_argument("--budget", type=float, default=BUDGET_MS, help="ms a page may take at p95 (300)")
    parser.add_argument("--export-runs", type=int, default=3, help="timed runs of the CSV export (3)")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    parser.add_argument("--keep-data", action="store_true", help="keep bench/data/pages.db for inspection")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the results (bench/PAGES.md)"
    )
    args = parser.parse_args(argv)
    args.argv = argv
    return args


def settings(store: Store, name: str) -> str:
    conn = store.raw_connect()
    try:
        return str(conn.execute(f"SHOW {name}").fetchone()[0])
    finally:
        conn.close()


def last_analyzed(store: Store) -> str:
    """When the log table last got planner statistics (by ANALYZE or autovacuum), or "never"."""
    conn = store.raw_connect()
    try:
        row = conn.execute(
            "SELECT greatest(last_analyze, last_autoanalyze) FROM pg_stat_user_tables "
            "WHERE relname = 'activity_entries'"
        ).fetchone()
        return f"{row[0]:%Y-%m-%d %H:%M:%S} UTC" if row and row[0] else "never"
    finally:
        conn.close()


def analyze(store: Store) -> None:
    """Planner statistics for every table, as autovacuum gathers them after a bulk load."""
    conn = store.raw_connect()
    try:
        conn.autocommit = True
        conn.execute("ANALYZE")
    finally:
        conn.close()


def _open(engine: str, args: argparse.Namespace) -> AbstractContextManager[Store]:
    if engine == "sqlite":
        return sqlite_store(keep=args.keep_data, name="pages.db")
    try:
        psycopg.connect(args.pg_url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        raise SystemExit(f"cannot reach {args.pg_url}: {str(exc).strip().splitlines()[0]}") from None
    return postgres_store(args.pg_url)  # created, migrated, always dropped


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, load_start = datetime.now(UTC), os.getloadavg()
    args.code = _code()
    engines = ENGINES if args.engine == "both" else (args.engine,)
    runs = []
    with ExitStack() as stack:
        stores = [stack.enter_context(_open(engine, args)) for engine in engines]
        print(
            f"seeding {args.entries:,} entries with `activitylog demo` on {', '.join(engines)} at once",
            flush=True,
        )
        seedings = [Seeding(store, args.entries) for store in stores]
        for seeding in seedings:
            stack.callback(seeding.stop)
        for store, seeding in zip(stores, seedings, strict=True):  # timed one engine at a time
            began = time.perf_counter()

            def log(message: str, engine: str = store.engine, began: float = began) -> None:
                print(f"[{engine} +{time.perf_counter() - began:6.1f}s] {message}", flush=True)

            if store.is_sqlite:
                runs.append(bench_engine(store, seeding, args, log, store.engine))
                continue
            # The planner's statistics come from ANALYZE, which autovacuum runs after a bulk load unless it
            # is off (as on some test servers): the pages as first loaded, then as a running server has them.
            runs.append(bench_engine(store, seeding, args, log, f"{store.engine} as seeded"))
            log("ANALYZE")
            analyze(store)
            runs.append(bench_engine(store, seeding, args, log, f"{store.engine} after ANALYZE"))
    args.out.write_text(render(runs, args, started, load_start))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
