"""``bench/retention.py``: a purge of 1M entries of a 2M-entry account (target < 60 s) while no append waits
more than 250 ms, and an erasure touching 1,000 entries (target < 5 s), on both engines.

For each engine: a throw-away database built by the real migrations; one account of ``--entries`` entries
spread over 800 days ending 30 days ago (so about half are past the default 400-day retention) with its
Merkle tree (``seeding``), beside a few small tenants. With the server started as ``make run`` starts it
(``activitylog serve``, workers on; the worker's own purge interval set to 0, so the measured run is the
operator's), in its own process:

1. appends: one client creates lists through the API of the same account, one request at a time, each
   timed: first alone (the baseline), then while the purge runs;
2. the purge: ``activitylog purge --account A`` in a process of its own, wall clock (start-up included);
3. checks: the tombstones are as many as the entries purged, and ``verify_account`` passes afterwards;
4. erasure: one address given 1,000 v2 entries through the recorder (a contact created, then updated), then
   ``services.erasure.erase_subscriber`` timed in-process, and the account verified again.

Results: bench/RESULTS-retention.md (one run; medians, p95, p99 and max; ratios within the run).

    .venv/bin/python bench/retention.py [--entries 2000000] [--engines sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from activitylog.db.models import ActivityEntry, PurgedEntry
from activitylog.log.record import RequestContext
from activitylog.log.verify import verify_account
from activitylog.pacing import BATCH_SECONDS, LARGE_BATCH
from activitylog.services import erasure, lists
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
# Sibling modules of bench/ (this runs as a script, so they import as top-level modules).
from bulk import settle
from proofs import ACTIVITYLOG, _open, app_env
from seeding import seed
from server import serve
from stores import DATA_DIR, Store, counts_at_head, describe, detectors_at_head

RESULTS = Path(__file__).resolve().parent / "RESULTS-retention.md"
BIG_SHARE = 0.95
HISTORY_DAYS, ENDS_DAYS_AGO = 800, 30
APPEND_TARGET_MS, PURGE_TARGET_S, ERASE_TARGET_S = 250.0, 60.0, 5.0


@dataclass
class Latencies:
    ms: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # each request's wall-clock start (time.time())
    errors: int = 0

    def slow(self) -> list[tuple[float, float]]:
        """(start, ms) of every request over the target."""
        return [(t, m) for t, m in zip(self.started, self.ms, strict=True) if m > APPEND_TARGET_MS]

    def row(self) -> str:
        if not self.ms:
            return "no requests"
        ordered = sorted(self.ms)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

        over = sum(1 for m in ordered if m > APPEND_TARGET_MS)
        return (
            f"{len(ordered):,} | {statistics.median(ordered):.1f} | {pct(0.95):.1f} | {pct(0.99):.1f} | "
            f"{ordered[-1]:.1f} | {over} | {self.errors}"
        )


PHASES = ("lock", "counts", "delete", "commit")


@dataclass
class Piece:
    """One piece of the purge, from its debug log line: when it ended and what it took."""

    ended: float  # wall clock, when the line was written (after the checkpoint)
    ms: float  # from the write lock taken to the commit
    checkpoint_ms: float
    purged: int
    phases: dict[str, float]  # the piece's ms by part: counts, delete, commit (and the wait for the lock)

    @property
    def began(self) -> float:
        return self.ended - (self.ms + self.checkpoint_ms) / 1000

    @classmethod
    def parse(cls, stderr: str) -> list[Piece]:
        pieces = []
        for line in stderr.splitlines():
            if '"purge piece"' not in line:
                continue
            fields = json.loads(line)
            ended = datetime.fromisoformat(fields["time"].replace("Z", "+00:00")).timestamp()
            phases = {part: fields[f"{part}_ms"] for part in PHASES if f"{part}_ms" in fields}
            pieces.append(cls(ended, fields["ms"], fields["checkpoint_ms"], fields["purged"], phases))
        return pieces


@dataclass
class EngineRun:
    engine: str
    versions: dict[str, str]
    seeded: int = 0
    seed_s: float = 0.0
    reused_seed: str = ""  # when the seeded file was made, if this run copied it (--reuse-seed)
    purge_s: float = 0.0
    purged: int = 0
    purge_output: str = ""
    baseline: Latencies = field(default_factory=Latencies)
    during: Latencies = field(default_factory=Latencies)
    verify_s: float = 0.0
    verified: bool = False
    verify_said: str = ""  # a failed verify's first bad seq and reason
    erase_entries: int = 0
    pieces: list[Piece] = field(default_factory=list)
    erase_s: float = 0.0
    erase_verified: bool = False
    erase_verify_said: str = ""
    load: list[float] = field(default_factory=list)


class Appender(threading.Thread):
    """Creates lists through the API, one request at a time, until stopped; times each."""

    def __init__(self, client: httpx.Client, into: Latencies) -> None:
        super().__init__(daemon=True)
        self.client, self.into, self.stop = client, into, threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.into.started.append(time.time())
            began = time.perf_counter()
            response = self.client.post("/api/v1/lists", json={"name": f"bench {n} {time.time_ns()}"})
            self.into.ms.append((time.perf_counter() - began) * 1000)
            if response.status_code != 201:
                self.into.errors += 1


def _count(store: Store, account_id: str, model: Any) -> int:
    db = store.app_db()
    try:
        with db.for_account(account_id).reader() as session:
            return int(session.scalar(select(func.count()).where(model.account_id == account_id)) or 0)
    finally:
        db.dispose()


def _verify(store: Store, account_id: str) -> tuple[bool, float, str]:
    """Whether the account verifies, how long that took, and what a failure names."""
    db = store.app_db()
    try:
        began = time.perf_counter()
        with db.for_account(account_id).reader() as session:
            verdict = verify_account(session, account_id)
        said = "" if verdict.ok else f"seq {verdict.first_bad_seq}: {verdict.reason}"
        return verdict.ok, time.perf_counter() - began, said
    finally:
        db.dispose()


def bench_erasure(store: Store, account_id: str, entries: int, run: EngineRun) -> None:
    """One address in ``entries`` v2 entries (a contact created, then updated), then erased."""
    db = store.app_db()
    try:
        address = f"erase-me-{time.time_ns()}@subscriber.example"

        def uow() -> UnitOfWork:
            return UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())

        lst = lists.create_list(uow(), "erasure bench")
        contact = lists.create_contact(
            uow(), lst.id, {"email": address, "first_name": "F0", "last_name": "L"}
        )
        for i in range(1, entries):
            lists.update_contact(uow(), contact.id, {"first_name": f"F{i}"})
        began = time.perf_counter()
        done = erasure.erase_subscriber(uow(), address)
        run.erase_s = time.perf_counter() - began
        run.erase_entries = done.entries
    finally:
        db.dispose()
    run.erase_verified, _, run.erase_verify_said = _verify(store, account_id)


def seed_and_count(
    store: Store, args: argparse.Namespace, run: EngineRun, log: Callable[[str], None]
) -> tuple[str, str]:
    """The seeded log, its derived counts at the head: (the account under test, its API key)."""
    total = int(args.entries / BIG_SHARE)
    log(f"seeding {total:,} entries, {args.entries:,} in the account under test, {HISTORY_DAYS} days")
    phase = time.perf_counter()
    seeded = seed(
        store,
        entries=total,
        accounts_total=args.accounts,
        big_share=BIG_SHARE,
        days=HISTORY_DAYS,
        ends_days_ago=ENDS_DAYS_AGO,
    )
    run.seed_s = time.perf_counter() - phase
    run.seeded = _count(store, seeded.account_id, ActivityEntry)
    detectors_at_head(store)  # the served worker follows new entries only, as it would have all along
    phase = time.perf_counter()
    counted = counts_at_head(store)
    settle(store)  # what autovacuum would soon do: the planner then knows the counts it holds
    log(f"counted {counted:,} entries into the derived counts ({time.perf_counter() - phase:.0f} s)")
    return seeded.account_id, seeded.api_key


@dataclass
class SeedCache:
    """``--reuse-seed``: the seeded, counted database kept (SQLite: a copy of the file under bench/data/;
    PostgreSQL: a template database) and copied back on later runs of the same size and schema, instead of
    20-25 minutes of seeding and counting on this machine. What the seed was is in a JSON file beside."""

    store: Store
    name: str  # retention-seed-<entries>-<schema>
    made: str = ""
    account_id: str = ""
    api_key: str = ""

    @classmethod
    def of(cls, store: Store, args: argparse.Namespace) -> SeedCache | None:
        if not args.reuse_seed:
            return None
        conn = store.raw_connect()
        try:
            schema = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        finally:
            conn.close()
        return cls(store, f"retention-seed-{args.entries}-{schema}")

    @property
    def about(self) -> Path:
        return DATA_DIR / f"{self.name}-{self.store.engine}.json"

    @property
    def copy(self) -> Path:
        return DATA_DIR / f"{self.name}.db"

    @property
    def template(self) -> str:
        return self.name.replace("-", "_")

    def restore(self, run: EngineRun) -> bool:
        if not self.about.exists():
            return False
        said = json.loads(self.about.read_text())
        if self.store.is_sqlite:
            if not self.copy.exists():
                return False
            for suffix in ("-wal", "-shm"):
                Path(self.store.raw_target + suffix).unlink(missing_ok=True)
            shutil.copyfile(self.copy, self.store.raw_target)
        else:
            with self._admin() as admin:
                if not admin.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (self.template,)
                ).fetchone():
                    return False
                target = self._database()
                admin.execute(f'DROP DATABASE "{target}" WITH (FORCE)')
                admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{self.template}"')
        self.made, self.account_id, self.api_key = said["made"], said["account_id"], said["api_key"]
        run.seeded, run.seed_s, run.reused_seed = said["seeded"], said["seed_s"], self.made
        return True

    def save(self, run: EngineRun, account_id: str, api_key: str) -> None:
        if self.store.is_sqlite:
            with sqlite3.connect(self.store.raw_target) as conn:  # all in the main file, none in the WAL
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            shutil.copyfile(self.store.raw_target, self.copy)
        else:
            with self._admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.template}"')
                admin.execute(  # a template is copied only while no one is connected to it
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                    (self._database(),),
                )
                admin.execute(f'CREATE DATABASE "{self.template}" TEMPLATE "{self._database()}"')
        made = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        said = {"made": made, "account_id": account_id, "api_key": api_key}
        self.about.write_text(json.dumps(said | {"seeded": run.seeded, "seed_s": run.seed_s}))

    def _database(self) -> str:
        return str(make_url(self.store.raw_target).database)

    def _admin(self) -> psycopg.Connection[Any]:
        url = make_url(self.store.raw_target).set(database="postgres")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


def bench_engine(store: Store, args: argparse.Namespace) -> EngineRun:
    run = EngineRun(store.engine, describe(store))
    began = time.perf_counter()

    def log(message: str) -> None:
        run.load.append(os.getloadavg()[0])
        print(f"[{store.engine} +{time.perf_counter() - began:6.1f}s] {message}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix=f"activitylog-retention-{store.engine}-"))
    cache = SeedCache.of(store, args)
    if cache is not None and cache.restore(run):
        account, api_key = cache.account_id, cache.api_key
        log(f"reused the seed of {cache.made} ({run.seeded:,} entries in the account under test)")
    else:
        account, api_key = seed_and_count(store, args, run, log)
        if cache is not None:
            cache.save(run, account, api_key)
    env = {**os.environ, **app_env(store, workdir), "ACTIVITYLOG_PURGE_INTERVAL_SECONDS": "0"}
    env["ACTIVITYLOG_LOG_LEVEL"] = "debug"  # a line per piece: what each took
    os.environ["ACTIVITYLOG_PURGE_INTERVAL_SECONDS"] = "0"  # the served worker: no purge of its own
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "activitylog-bench"}
    with (
        serve(store.url, {**os.environ, **app_env(store, workdir)}, workdir=workdir) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=60) as client,
    ):
        log(f"appends alone for {args.baseline_seconds:g} s")
        appender = Appender(client, run.baseline)
        appender.start()
        time.sleep(args.baseline_seconds)
        appender.stop.set()
        appender.join()
        log("the purge, with appends")
        appender = Appender(client, run.during)
        appender.start()
        phase = time.perf_counter()
        done = subprocess.run(
            [str(ACTIVITYLOG), "purge", "--account", account],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        run.purge_s = time.perf_counter() - phase
        appender.stop.set()
        appender.join()
        run.pieces = Piece.parse(done.stderr)
        said = [line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("{")]
        run.purge_output = str(said[-2:])
        if done.returncode != 0:
            raise RuntimeError(f"purge failed: {done.stdout}{done.stderr}")
    run.purged = _count(store, account, PurgedEntry)
    log(f"purged {run.purged:,} in {run.purge_s:.1f} s; verifying")
    run.verified, run.verify_s, run.verify_said = _verify(store, account)
    if not run.verified:
        log(f"verify after the purge FAILED: {run.verify_said}")
    log(f"erasure of an address in {args.erase_entries:,} entries")
    bench_erasure(store, account, args.erase_entries, run)
    log(f"erased {run.erase_entries:,} entries in {run.erase_s:.2f} s")
    return run


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def render(runs: list[EngineRun], args: argparse.Namespace, started: datetime) -> str:
    lines = [
        "# Retention: purge and erasure at scale",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC by `bench/retention.py` ({' '.join(sys.argv[1:]) or 'defaults'}), "
        "on this 2-core machine shared with other work (load average during the run: "
        f"{', '.join(f'{max(r.load, default=0):.1f}' for r in runs)} at most). The server runs as `make run` "
        "starts it (`activitylog serve`, workers on); the purge is `activitylog purge --account A` in its "
        "own process; appends are `POST /api/v1/lists` of the same account, one at a time, each a durable "
        "transaction with its entry (the latency is the client's: HTTP + the transaction).",
        "",
        "The purge writes the run's `activity_log.purge` entry first (under the chain head's lock), then "
        "carries out the plan in pieces, each a transaction of its own that does not hold the head: on "
        f"SQLite, whose write lock is the whole file, pieces of about {BATCH_SECONDS * 1000:.0f} ms (sized "
        "from the pieces before), so an append waits for one at most; on PostgreSQL, where a piece locks "
        f"only the rows it deletes and no append waits for it, pieces of {LARGE_BATCH:,} seqs. The derived "
        "counts are brought to the head before the server starts (as the worker would have kept them), and "
        "the tables are analyzed, as autovacuum would soon do.",
        "",
        "| engine | entries in the account | purged | purge wall time | target < 60 s | verify after |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(
            f"| {r.engine} | {r.seeded:,} | {r.purged:,} | {r.purge_s:.1f} s "
            f"({r.purged / max(r.purge_s, 1e-9):,.0f}/s) | {_met(r.purge_s < PURGE_TARGET_S)} | "
            f"{'ok' if r.verified else f'FAILED, {r.verify_said}'} ({r.verify_s:.0f} s) |"
        )
    lines += [
        "",
        "Appends (ms, client side):",
        "",
        "| engine | when | requests | median | p95 | p99 | max | > 250 ms | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        lines.append(f"| {r.engine} | alone | {r.baseline.row()} |")
        lines.append(f"| {r.engine} | during the purge | {r.during.row()} |")
    lines += ["", "Targets: no append over 250 ms during the purge; erasure of 1,000 entries < 5 s.", ""]
    lines += [
        "| engine | appends ≤ 250 ms during the purge | median during / alone | erasure |",
        "| --- | --- | --- | --- |",
    ]
    for r in runs:
        worst = max(r.during.ms, default=0.0)
        ratio = statistics.median(r.during.ms) / statistics.median(r.baseline.ms) if r.during.ms else 0.0
        lines.append(
            f"| {r.engine} | {_met(worst <= APPEND_TARGET_MS)} (max {worst:.0f} ms) | {ratio:.2f}x | "
            f"{r.erase_entries:,} entries in {r.erase_s:.2f} s, {_met(r.erase_s < ERASE_TARGET_S)}, verify "
            f"{'ok' if r.erase_verified else f'FAILED, {r.erase_verify_said}'} |"
        )
    lines += ["", *pieces_report(runs)]
    lines += ["", "Seeding and versions:", ""]
    for r in runs:
        reused = f" (its file reused, made {r.reused_seed})" if r.reused_seed else ""
        lines.append(
            f"- {r.engine}: seeded in {r.seed_s:.0f} s{reused}; {r.versions}; purge said {r.purge_output}"
        )
    return "\n".join(lines) + "\n"


def pieces_report(runs: list[EngineRun]) -> list[str]:
    """The purge's pieces (from its debug lines), and which of them each slow append overlapped."""
    lines = [
        "The purge's pieces (ms: the piece's transaction; checkpoint: on SQLite, the write-ahead log copied "
        "after it):",
        "",
        "| engine | pieces | median ms | p99 ms | max ms | checkpoint max ms | entries a piece (median) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        if not r.pieces:
            lines.append(f"| {r.engine} | no piece lines | | | | | |")
            continue
        ms = sorted(p.ms for p in r.pieces)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        copy = max(p.checkpoint_ms for p in r.pieces)
        size = statistics.median(p.purged for p in r.pieces)
        lines.append(
            f"| {r.engine} | {len(ms):,} | {statistics.median(ms):.0f} | {p99:.0f} | {ms[-1]:.0f} | "
            f"{copy:.0f} | {size:,.0f} |"
        )
    for r in runs:
        parts = [
            f"{part} {_spread([p.phases[part] for p in r.pieces if part in p.phases])}"
            for part in PHASES
            if any(part in p.phases for p in r.pieces)
        ]
        if parts:
            lines.append(f"- {r.engine}: the pieces by part, ms (median / p99 / max): {'; '.join(parts)}")
    for r in runs:
        for started, took in r.during.slow():
            ended = started + took / 1000
            overlapping = [p for p in r.pieces if p.began < ended and p.ended > started]
            said = "; ".join(
                f"piece {r.pieces.index(p) + 1}: {p.ms:.0f} ms ({_phases(p)}) + checkpoint "
                f"{p.checkpoint_ms:.0f} ms, {p.purged:,} entries"
                for p in overlapping
            )
            lines.append(f"- {r.engine}: an append of {took:.0f} ms overlapped {said or 'no piece'}")
    return lines


def _spread(ms: list[float]) -> str:
    ms = sorted(ms)
    return f"{statistics.median(ms):.0f} / {ms[min(len(ms) - 1, int(0.99 * len(ms)))]:.0f} / {ms[-1]:.0f}"


def _phases(piece: Piece) -> str:
    return ", ".join(f"{part} {ms:.0f}" for part, ms in piece.phases.items()) or "no parts logged"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 entries: a smoke test")
    parser.add_argument("--entries", type=int, help="entries of the account under test (2,000,000)")
    parser.add_argument("--accounts", type=int, default=5, help="accounts seeded, the first holding 95%%")
    parser.add_argument(
        "--baseline-seconds", type=float, default=10.0, help="appends alone, before the purge"
    )
    parser.add_argument("--erase-entries", type=int, default=1000, help="entries holding the erased address")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--reuse-seed",
        action="store_true",
        help="keep the seeded, counted database (a file under bench/data/; a PostgreSQL template) and "
        "reuse it on later runs of the same size and schema",
    )
    args = parser.parse_args(argv)
    if args.entries is None:
        args.entries = 50_000 if args.quick else 2_000_000
    if args.quick:
        args.baseline_seconds = min(args.baseline_seconds, 3.0)
        args.erase_entries = min(args.erase_entries, 200)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    runs: list[EngineRun] = []
    for engine in (e.strip() for e in args.engines.split(",") if e.strip()):
        with _open(engine, args) as store:
            runs.append(bench_engine(store, args))
        RESULTS.write_text(render(runs, args, started))  # after each engine: a late failure keeps it
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
