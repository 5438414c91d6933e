"""Where the recorder's price goes: one append (a list and its entry, one durable transaction) by three
paths in one process, in alternating rounds of one run, against the raw driver doing the same work.

- *recorder*: ``services.lists.create_list``, as every request makes a change (ORM flush, guard, chain,
  tree, head, commit): ``make bench``'s recorder path.
- *core*: the same list and entry through ``services.bulk`` (one Core ``INSERT`` whose change is handed to
  ``record()``, in the same unit of work and transaction): what the services would cost off the ORM.
- *raw*: ``appends.RawWriter``, the bare driver (``sqlite3`` / ``psycopg``) with a hand-computed hash.

The question it answers: how close to the raw driver the recorder can come while it stays on SQLAlchemy.
The chains of all three accounts are verified at the end.

    .venv/bin/python bench/recorder.py [--appends 1000] [--rounds 4] [--engines sqlite,postgresql]

Writes bench/RESULTS-recorder.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from activitylog.db.models import MailingList
from activitylog.ids import new_id
from activitylog.log.record import RequestContext
from activitylog.services import bulk
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
from appends import RawWriter, RecorderWriter, Writer, _make_accounts, _verify_chains
from harness import fresh_store
from report import load_average, machine
from stores import Store

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("recorder", "core", "raw")
TARGET = 0.7  # issue 16: the recorder at >= 0.7 of the raw driver


class CoreWriter:
    """The list inserted with Core through ``services.bulk``, its change logged in the same call."""

    def __init__(self, store: Store, account_id: str) -> None:
        self.db = store.app_db()
        self.account_id = account_id

    def append(self, i: int) -> None:
        with UnitOfWork(
            self.db, account_id=self.account_id, actor=SYSTEM_CLI, context=RequestContext()
        ) as uow:
            row = bulk.new(
                MailingList,
                id=new_id("lst"),
                account_id=self.account_id,
                name=f"bench list {i}",
                created_at=uow.clock(),
            )
            bulk.create(uow, [row])
            uow.commit()

    def close(self) -> None:
        self.db.dispose()


def measure(store: Store, appends: int, rounds: int) -> dict[str, list[float]]:
    """Microseconds an append, per path and round; the order of the paths turns each round."""
    accounts = dict(zip(PATHS, _make_accounts(store, len(PATHS), "recorder-bench"), strict=True))
    writers: dict[str, Writer] = {
        "recorder": RecorderWriter(store, accounts["recorder"]),
        "core": CoreWriter(store, accounts["core"]),
        "raw": RawWriter(store, accounts["raw"]),
    }
    times: dict[str, list[float]] = {path: [] for path in PATHS}
    i = 0
    try:
        for r in range(rounds):
            order = PATHS[r % len(PATHS) :] + PATHS[: r % len(PATHS)]
            for path in order:
                writer = writers[path]
                started = time.perf_counter()
                for _ in range(appends):
                    i += 1
                    writer.append(i)
                times[path].append((time.perf_counter() - started) / appends * 1e6)
    finally:
        for writer in writers.values():
            writer.close()
    _verify_chains(store, list(accounts.values()))
    return times


def report(results: dict[str, dict[str, list[float]]], appends: int, rounds: int, load: str) -> str:
    info = machine()
    lines = [
        "# The recorder's price, path by path",
        "",
        f"Written by `bench/recorder.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"({info['nproc']} CPUs, {info['CPU']}, Python {info['Python']}; load average {load} before, "
        f"{load_average()} after); {rounds} rounds of {appends:,} appends by each path, alternating, in one "
        "process; each append one durable transaction holding a list and its entry. The paths: *recorder*, "
        "`create_list` as a request makes it (ORM flush and guard); *core*, the same list written with one "
        "Core statement through `services.bulk`, its change handed to the recorder (the services off the "
        "ORM); *raw*, the bare driver with a hand-computed hash. Do not edit by hand.",
        "",
        "| engine | path | us an append (median) | per round | raw ÷ path | target ≥ 0.7 |",
        "|---|---|---:|---|---:|---|",
    ]
    for engine, times in results.items():
        raw = statistics.median(times["raw"])
        for path in PATHS:
            median = statistics.median(times[path])
            ratio = raw / median
            verdict = "" if path == "raw" else ("met" if ratio >= TARGET else "**missed**")
            rounds_text = ", ".join(f"{t:,.0f}" for t in times[path])
            lines.append(f"| {engine} | {path} | {median:,.0f} | {rounds_text} | {ratio:.2f} | {verdict} |")
    lines.append("")
    for engine, times in results.items():
        recorder, core, raw = (statistics.median(times[path]) for path in PATHS)
        lines.append(
            f"- {engine}: the ORM's share (recorder minus core) {recorder - core:,.0f} us an append; what is "
            f"left above the bare driver off the ORM (core minus raw) {core - raw:,.0f} us; the target "
            f"allows {raw / TARGET - raw:,.0f} us above it in all."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appends", type=int, default=1000, help="appends by each path in a round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-recorder.md")
    options = parser.parse_args()
    load = load_average()
    results = {}
    for engine in options.engines.split(","):
        with (
            TemporaryDirectory(prefix="activitylog-bench-recorder-") as work,
            fresh_store(engine, options.pg_url, Path(work)) as store,
        ):
            results[engine] = measure(store, options.appends, options.rounds)
    text = report(results, options.appends, options.rounds, load)
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
