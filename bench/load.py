"""Load: what one ``activitylog serve``, started as ``make run`` starts it, answers under concurrent clients.

For each engine: an account with ``--entries`` entries (seeded as bench/seeding.py does), ``serve``
with its defaults (one web process per CPU, the workers in a process beside them), and wrk (Debian's) at
8 and 32 connections for ``--seconds`` each, on a filtered first page (``actor_type=api_key``, 50 rows) and
on a mutation (``POST /api/v1/lists``: one durable transaction with its chained entry). The seeded log is
counted and the detectors start at its head first, so the served worker is in its steady state (following
the new entries), not replaying the seed while wrk runs.

In the same run, the raw engine's own rate for the same work, from as many processes as the server has
web processes: the page's statements exactly as the application sends them (captured at the driver,
bench/appsql.py) through the bare driver, and the mutation's durable transaction through the bare driver
(bench/appends.py's ``RawWriter``). Results: bench/RESULTS-load.md.

    python bench/load.py [--entries 200000] [--engines sqlite,postgresql] [--seconds 15]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# isort: split
# Sibling modules of bench/ (run as a script, so they import as top-level modules).
import appsql
from appends import RawWriter
from bulk import settle
from harness import server_env
from seeding import seed
from server import serve
from stores import Store, counts_at_head, describe, detectors_at_head, postgres_store, sqlite_store

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS-load.md"
PAGE = {"actor_type": "api_key", "limit": "50"}
CONNECTIONS = (8, 32)
MUTATION_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
counter = 0
request = function()
  counter = counter + 1
  return wrk.format(nil, nil, nil, '{"name": "load list ' .. counter .. '"}')
end
"""


@dataclass(frozen=True)
class WrkResult:
    what: str
    connections: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: str


@dataclass(frozen=True)
class RawRate:
    what: str
    processes: int
    per_second: float


@dataclass
class EngineRun:
    engine: str
    info: dict[str, str]
    web_processes: int
    entries: int
    wrk: list[WrkResult]
    raw: list[RawRate]


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def wrk(what: str, url: str, key: str, connections: int, seconds: int, script: Path | None) -> WrkResult:
    command = ["wrk", f"-t{min(connections, 4)}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-H", f"Authorization: Bearer {key}"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return WrkResult(
        what,
        connections,
        rate,
        p50,
        p99,
        int(non_2xx.group(1)) if non_2xx else 0,
        errors.group(1) if errors else "",
    )


_ready: Any = None


def _share(barrier: Any) -> None:
    global _ready
    _ready = barrier


def _together(seconds: float) -> float:
    """Wait for every raw process to be connected and ready; the end of the measured stretch."""
    _ready.wait()
    return time.time() + seconds


def _raw_pages(store: Store, statements: list[appsql.Statement], seconds: float) -> int:
    conn = store.raw_connect()
    done = 0
    end = _together(seconds)
    while time.time() < end:
        for s in statements:
            cur = conn.cursor()
            cur.execute(s.sql, s.params)
            cur.fetchall()
            cur.close()
        if not store.is_sqlite:
            conn.rollback()
        done += 1
    conn.close()
    return done


def _raw_writes(store: Store, account_id: str, seconds: float) -> int:
    writer = RawWriter(store, account_id)
    done = 0
    end = _together(seconds)
    while time.time() < end:
        writer.append(done)
        done += 1
    writer.close()
    return done


def raw_rate(what: str, target, args: tuple, processes: int, seconds: float) -> RawRate:  # type: ignore[no-untyped-def, type-arg]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_share, initargs=(context.Barrier(processes),)) as pool:
        counts = pool.starmap(target, [(*args, seconds)] * processes)
    return RawRate(what, processes, sum(counts) / seconds)


def run_engine(store: Store, entries: int, seconds: int, workdir: Path) -> EngineRun:
    print(f"[{store.engine}] seeding {entries:,} entries", flush=True)
    seeded = seed(store, entries=entries, accounts_total=20)
    detectors_at_head(store)  # the served worker follows new entries only, as it would have all along
    counts_at_head(store)  # and counts them: not a first count of the seeded log while wrk runs
    settle(store)
    db = store.app_db()
    try:
        statements = appsql.page(db, seeded.account_id, PAGE, int(PAGE["limit"]))
    finally:
        db.dispose()
    processes = os.cpu_count() or 1
    script = workdir / "mutation.lua"
    script.write_text(MUTATION_LUA)
    results: list[WrkResult] = []
    unset = ("ACTIVITYLOG_WEB_PROCESSES", "ACTIVITYLOG_CHECKPOINT_INTERVAL_SECONDS")  # make run's defaults
    env = {k: v for k, v in server_env(store, workdir).items() if k not in unset}
    with serve(store.url, env, workdir=workdir) as server:
        url = server.url
        page_url = f"{url}/api/v1/activity?" + "&".join(f"{k}={v}" for k, v in PAGE.items())
        for connections in CONNECTIONS:
            print(f"[{store.engine}] wrk page, {connections} connections", flush=True)
            results.append(wrk("filtered page", page_url, seeded.api_key, connections, seconds, None))
        for connections in CONNECTIONS:
            print(f"[{store.engine}] wrk mutation, {connections} connections", flush=True)
            results.append(
                wrk("mutation", f"{url}/api/v1/lists", seeded.api_key, connections, seconds, script)
            )
    print(f"[{store.engine}] raw engine", flush=True)
    raw = [
        raw_rate("filtered page", _raw_pages, (store, statements), processes, seconds),
        raw_rate("mutation", _raw_writes, (store, seeded.account_id), processes, seconds),
    ]
    return EngineRun(store.engine, describe(store), processes, entries, results, raw)


def render(runs: list[EngineRun], seconds: int) -> str:
    now = datetime.now(UTC)
    out = [
        "# Load: one `activitylog serve` under concurrent clients",
        "",
        f"Run of {now:%Y-%m-%d %H:%M} UTC by `bench/load.py` on {os.cpu_count()} CPUs. `serve` as `make run` "
        "starts it (its default web processes, the workers beside them, checkpoints on); wrk "
        f"{seconds} s per row. The raw engine does the same work with nothing of the application on top, "
        "from as many processes as the server has web processes, in the same run: the page's statements as "
        "the application sends them, and the mutation's durable transaction (bench/appends.py `RawWriter`).",
        "",
    ]
    for run in runs:
        raw = {r.what: r for r in run.raw}
        out += [
            f"## {run.engine} ({run.entries:,} entries, {run.web_processes} web processes)",
            "",
            f"Engine: {run.info}",
            "",
            "| work | connections | requests/s | p50 ms | p99 ms | non-2xx | raw engine /s | served / raw |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in run.wrk:
            base = raw[r.what].per_second
            out.append(
                f"| {r.what} | {r.connections} | {r.requests_per_second:,.0f} | {r.p50_ms:.1f} | "
                f"{r.p99_ms:.1f} | {r.non_2xx} | {base:,.0f} | {r.requests_per_second / base:.2f} |"
            )
        errors = [f"{r.what} at {r.connections}: {r.errors}" for r in run.wrk if r.errors]
        if errors:
            out += ["", "Socket errors: " + "; ".join(errors)]
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "ACTIVITYLOG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    runs = []
    for engine in args.engines.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            stores = sqlite_store(name="load.db") if engine == "sqlite" else postgres_store(args.pg)
            with stores as store:
                runs.append(run_engine(store, args.entries, args.seconds, Path(tmp)))
    args.output.write_text(render(runs, args.seconds))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
