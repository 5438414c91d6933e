"""Alerts under load, with ``activitylog serve`` started as ``make run`` starts it (its worker process runs
the detectors), over a fresh SQLite file by default (``--database-url`` for an empty PostgreSQL database):

1. **Latency** from commit to alert: ``--keys`` API keys, each used once a day ago from 203.0.113.0/24,
   then each acting over the API from a new network; for each, the ``credential.new_ip`` alert's
   ``raised_at`` minus the triggering entry's ``occurred_at`` (taken under the chain lock just before the
   commit, so a little more than the time from commit), and the time until a client polling
   ``GET /api/v1/alerts`` every 10 ms first sees it.
2. **The append path** with the detectors on (``ACTIVITYLOG_ALERT_INTERVAL_SECONDS=0.2``) and off (``0``):
   the p50 of ``POST /api/v1/lists`` by one key from rotating networks, in alternating rounds, each with a
   serve of its own.
3. **Detector throughput**: a ``--replay``-entry log seeded by ``bench/seeding.py`` (a year of 1,000
   accounts), checked from seq 1 by the detectors in-process (no email): entries per second.

Writes bench/RESULTS-alerts.md (or ``--output``).

    .venv/bin/python bench/alerts.py [--keys 40] [--appends 300] [--rounds 3] [--replay 1000000]
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from report import load_average  # noqa: E402
from seeding import seed  # noqa: E402
from server import serve  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from stores import postgres_store, sqlite_store  # noqa: E402

from activitylog.alerts.follower import AlertFollower  # noqa: E402
from activitylog.config import Settings  # noqa: E402
from activitylog.db.base import connect  # noqa: E402
from activitylog.db.models import ActivityEntry, Alert  # noqa: E402
from activitylog.log.record import Actor, RequestContext  # noqa: E402
from activitylog.services import accounts, api_keys, lists  # noqa: E402
from activitylog.services.auth import authenticate_api_key  # noqa: E402
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork  # noqa: E402

BIN = Path(sys.executable).parent


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _setup(url: str, keys: int) -> tuple[str, str, list[str]]:
    """An account a week old, its owner's full key, and ``keys`` write keys each used once, a day ago, from
    203.0.113.0/24. Returns (account, reader key secret, key secrets)."""
    db = connect(url)
    try:
        week_ago = datetime.now(UTC) - timedelta(days=7)
        clock = [week_ago]
        account = accounts.create_account(
            db,
            name="Alert bench",
            owner_email=f"owner-{uuid.uuid4().hex[:8]}@bench.example",
            password="bench password, not a secret",
            actor=SYSTEM_CLI,
            context=RequestContext(),
            clock=lambda: clock[0],
        ).account.id

        def uow(actor: Actor = SYSTEM_CLI, ip: str | None = None) -> UnitOfWork:
            return UnitOfWork(
                db, account_id=account, actor=actor, context=RequestContext(ip=ip), clock=lambda: clock[0]
            )

        reader = api_keys.create_api_key(uow(), name="bench reader", scopes=["full"]).secret
        secrets = []
        for i in range(keys):
            issued = api_keys.create_api_key(uow(), name=f"bench key {i}", scopes=["write"])
            secrets.append(issued.secret)
        clock[0] = datetime.now(UTC) - timedelta(days=1)
        for i, secret in enumerate(secrets):
            key_id = _key_id(db, account, secret)
            lists.create_list(
                uow(Actor("api_key", key_id, f"bench key {i}"), "203.0.113.5"), f"first use {i}"
            )
        return account, reader, secrets
    finally:
        db.dispose()


def _key_id(db: Any, account: str, secret: str) -> str:
    return authenticate_api_key(db, secret, None).actor.id


def _env(url: str, work: Path, interval: str) -> dict[str, str]:
    return {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": url,
        "ACTIVITYLOG_TRUSTED_PROXIES": "127.0.0.1",
        "ACTIVITYLOG_SIGNING_KEY_FILE": str(work / "signing.key"),
        "ACTIVITYLOG_DATA_KEY_FILE": str(work / "data.key"),
        "ACTIVITYLOG_ALERT_INTERVAL_SECONDS": interval,
        "ACTIVITYLOG_ALERT_FROM_EMAIL": "alerts@bench.example",
    }


def latency(url: str, work: Path, reader: str, secrets: list[str]) -> dict[str, list[float]]:
    port = _port()
    base = f"http://127.0.0.1:{port}"
    raised, seen = [], []
    with serve(url, _env(url, work, "0.2"), workdir=work, port=port):
        owner = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {reader}"}, timeout=30)
        for i, secret in enumerate(secrets):
            headers = {
                "Authorization": f"Bearer {secret}",
                "X-Forwarded-For": f"198.51.{100 + i // 250}.{1 + i % 250}",
            }
            made = httpx.post(
                f"{base}/api/v1/lists", json={"name": f"from afar {i}"}, headers=headers, timeout=30
            )
            made.raise_for_status()
            entry = owner.get("/api/v1/activity", params={"resource_id": made.json()["id"]}).json()["data"][0]
            committed = _epoch(entry["occurred_at"])
            deadline = time.monotonic() + 30
            while True:
                found = [
                    a
                    for a in owner.get(
                        "/api/v1/alerts", params={"kind": "credential.new_ip", "limit": 5}
                    ).json()["data"]
                    if entry["seq"] in a["seqs"]
                ]
                if found:
                    if i > 0:  # the first key's alert only waits for the worker to start: not counted
                        seen.append(time.time() - committed)
                        raised.append(_epoch(found[0]["raised_at"].replace("+00:00", "Z")) - committed)
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"no alert for seq {entry['seq']} within 30 s")
                time.sleep(0.01)
    return {"raised": raised, "seen": seen}


def appends(url: str, work: Path, secret: str, count: int, rounds: int) -> dict[str, list[float]]:
    p50s: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode, interval in (("off", "0"), ("on", "0.2")):
            port = _port()
            with serve(url, _env(url, work, interval), workdir=work, port=port):
                client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
                times = []
                for i in range(count + 20):
                    headers = {"Authorization": f"Bearer {secret}", "X-Forwarded-For": f"192.0.2.{1 + i % 3}"}
                    started = time.perf_counter()
                    client.post(
                        "/api/v1/lists", json={"name": f"{mode} {i}"}, headers=headers
                    ).raise_for_status()
                    if i >= 20:  # the first requests warm the server up
                        times.append(time.perf_counter() - started)
                p50s[mode].append(statistics.median(times))
                time.sleep(1.0)  # let the detectors catch up before the next round's serve
    return p50s


def replay(entries: int, database_url: str | None) -> dict[str, Any]:
    context = postgres_store(database_url) if database_url else sqlite_store(name="alerts-replay.db")
    with context as store:
        seeded = seed(store, entries=entries)
        db = store.app_db()
        try:
            follower = AlertFollower(db, Settings(database_url=store.url), email=False)
            started = time.perf_counter()
            raised = 0
            while follower.due():
                raised += follower.run_once(max_batches=1_000_000)
            seconds = time.perf_counter() - started
            with db.system().reader() as session:
                total = session.execute(select(func.count()).select_from(ActivityEntry)).scalar_one()
                kinds = Counter(k for (k,) in session.execute(select(Alert.kind)).all())
        finally:
            db.dispose()
    return {
        "entries": total,
        "seeded": seeded.total,
        "seconds": seconds,
        "raised": raised,
        "kinds": dict(kinds),
    }


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.2f} ms" for v in values)


def report(
    options: argparse.Namespace,
    lat: dict[str, list[float]],
    p50s: dict[str, list[float]],
    rep: dict[str, Any] | None,
    engine: str,
) -> str:
    off, on = statistics.median(p50s["off"]), statistics.median(p50s["on"])
    ratio = on / off
    p95_raised, p95_seen = _pct(lat["raised"], 0.95), _pct(lat["seen"], 0.95)
    lines = [
        "# Alerts: latency, the append path, detector throughput",
        "",
        f"Generated by `bench/alerts.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {engine}, "
        f"{platform.machine()} with {os.cpu_count()} cores (load average before: {load_average()}). "
        "The server is `activitylog serve` as `make run` starts it; its worker process runs the detectors "
        "every 0.2 s. Overwritten by every run.",
        "",
        "## Latency from commit to alert (`credential.new_ip`)",
        "",
        f"{len(lat['raised'])} keys, each acting from a new network once over the API, one after another "
        "(after one more whose alert only shows that the worker is up).",
        "",
        "| measure | median | p95 | max | target |",
        "|---|---|---|---|---|",
        f"| `raised_at` - entry `occurred_at` | {statistics.median(lat['raised']):.3f} s | "
        f"{p95_raised:.3f} s | "
        f"{max(lat['raised']):.3f} s | < 5 s (aim < 1 s): {'met' if p95_raised < 5 else 'MISSED'}"
        f"{', aim met' if p95_raised < 1 else ', aim missed'} |",
        f"| seen by a client polling every 10 ms | {statistics.median(lat['seen']):.3f} s | "
        f"{p95_seen:.3f} s | "
        f"{max(lat['seen']):.3f} s | < 5 s: {'met' if p95_seen < 5 else 'MISSED'} |",
        "",
        "## The append path, detectors on vs off",
        "",
        f"p50 of `POST /api/v1/lists` ({options.appends} requests a round after 20 to warm up, one key from "
        f"three rotating networks), {options.rounds} alternating rounds per mode, each with its own serve.",
        "",
        "| mode | p50 per round | median |",
        "|---|---|---|",
        f"| detectors off (`ACTIVITYLOG_ALERT_INTERVAL_SECONDS=0`) | {_ms(p50s['off'])} | {off * 1000:.2f} ms"
        " |",
        f"| detectors on (`0.2`) | {_ms(p50s['on'])} | {on * 1000:.2f} ms |",
        "",
        f"Ratio on/off: **{ratio:.3f}** (target ≤ 1.05: {'met' if ratio <= 1.05 else 'MISSED'}).",
        "",
    ]
    if rep is not None:
        rate = rep["entries"] / rep["seconds"]
        lines += [
            "## Detector throughput over a replay",
            "",
            f"A log of {rep['entries']:,} entries ({rep['seeded']:,} seeded by `bench/seeding.py`: a year of "
            "1,000 accounts, one holding 20%), checked from seq 1 by the detectors in one process, no email.",
            "",
            "| entries | seconds | entries/s | alerts raised |",
            "|---|---|---|---|",
            f"| {rep['entries']:,} | {rep['seconds']:.1f} | {rate:,.0f} | {rep['raised']:,} |",
            "",
            "Alerts by kind: "
            + (", ".join(f"`{k}` {v:,}" for k, v in sorted(rep["kinds"].items())) or "none")
            + ".",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL server URL (default: a fresh SQLite file)"
    )
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--appends", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--replay", type=int, default=1_000_000, help="entries to seed and replay (0: skip)")
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS-alerts.md"))
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as folder:
        work = Path(folder)
        if options.database_url:
            context: Any = postgres_store(options.database_url)
        else:
            context = sqlite_store(name="alerts-bench.db")
        with context as store:
            account, reader, secrets = _setup(store.url, options.keys + 1)
            lat = latency(store.url, work, reader, secrets)
            p50s = appends(store.url, work, secrets[0], options.appends, options.rounds)
            engine = store.engine
    rep = replay(options.replay, options.database_url) if options.replay else None
    text = report(options, lat, p50s, rep, engine)
    Path(options.output).write_text(text + "\n")
    print(text)
    _ = account


if __name__ == "__main__":
    main()
