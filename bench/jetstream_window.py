"""What publishing JetStream events a window at a time buys, as an A/B in one run: the relay (in this
process, over a fresh SQLite file) drains a backlog of ``--entries`` entries to the local nats-server with
a window of 1 (an event, then its ack, then the next: the relay before windows) and of
``relay.NATS_WINDOW``, alternating, ``--rounds`` times; each trial is a new stream on a subject of its own
(so JetStream de-duplicates nothing). events/s = entries delivered / seconds from the first round to the
cursor reaching the head. The machine's load goes into the file: on a shared machine only the ratio in one
run means much. ``bench/streams.py`` measures the same end to end, with ``serve`` as ``make run`` starts it.

    .venv/bin/python bench/jetstream_window.py [--entries 3000] [--rounds 3]

Writes bench/RESULTS-jetstream-window.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import nats

from activitylog.config import Settings
from activitylog.db.base import connect
from activitylog.db.migrate import upgrade
from activitylog.log.follow import committed_head
from activitylog.log.record import RequestContext
from activitylog.relay import relay as relay_module
from activitylog.relay.jetstream import jetstream_name
from activitylog.relay.relay import StreamRelay
from activitylog.services import accounts, lists, streams
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork

# isort: split
from report import load_average

ROOT = Path(__file__).resolve().parent.parent
NATS_URL = os.environ.get("ACTIVITYLOG_NATS_URL", "nats://127.0.0.1:4222")


async def _drop(subjects: list[str]) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        for subject in subjects:
            with contextlib.suppress(Exception):  # not created
                await nc.jetstream().delete_stream(jetstream_name(subject))
    finally:
        await nc.close()


def run(options: argparse.Namespace) -> tuple[list[tuple[int, float]], str, str]:
    work = Path(tempfile.mkdtemp(prefix="activitylog-bench-window-"))
    url = f"sqlite:///{work / 'activitylog.db'}"
    settings = Settings(
        database_url=url, key_dir=str(work / "keys"), data_key_file=str(work / "data.key"), nats_url=NATS_URL
    )
    subjects: list[str] = []
    try:
        db = connect(url)
        upgrade(db)
        account = accounts.create_account(
            db, name="Bench", owner_email="bench@example.com", password="correct horse battery",
            actor=SYSTEM_CLI, context=RequestContext(),
        ).account.id  # fmt: skip
        for i in range(options.entries):
            lists.create_list(
                UnitOfWork(db, account_id=account, actor=SYSTEM_CLI, context=RequestContext()), f"L{i}"
            )
        before = load_average()
        trials: list[tuple[int, float]] = []
        for _ in range(options.rounds):
            for window in (1, relay_module.NATS_WINDOW):
                subject = f"benchwin{uuid.uuid4().hex[:8]}"
                subjects.append(subject)
                uow = UnitOfWork(db, account_id=account, actor=SYSTEM_CLI, context=RequestContext())
                body = {"name": subject, "type": "nats", "subject": subject, "from_seq": 1}
                stream = streams.create_stream(uow, body, settings).stream
                with db.for_account(account).read_connection() as conn:
                    head = committed_head(conn, account)
                saved, relay_module.NATS_WINDOW = relay_module.NATS_WINDOW, window
                relay = StreamRelay(db, settings)
                try:
                    started = time.perf_counter()
                    while streams.view(db.for_account(account), stream)["delivered_seq"] < head:
                        relay.run_once()
                        relay.drain(timeout=600)
                    seconds = time.perf_counter() - started
                finally:
                    relay.close()
                    relay_module.NATS_WINDOW = saved
                trials.append((window, head / seconds))
                print(f"window {window}: {head / seconds:,.0f} events/s")
        return trials, before, load_average()
    finally:
        asyncio.run(_drop(subjects))
        shutil.rmtree(work, ignore_errors=True)


def report(trials: list[tuple[int, float]], before: str, after: str, options: argparse.Namespace) -> str:
    windows = sorted({w for w, _ in trials})
    median = {w: statistics.median(r for x, r in trials if x == w) for w in windows}
    lines = [
        "# JetStream: events published one at a time vs a window at a time",
        "",
        "`.venv/bin/python bench/jetstream_window.py "
        f"--entries {options.entries} --rounds {options.rounds}` on "
        f"{platform.node() or 'a machine'} ({os.cpu_count()} CPUs, shared with other work), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {before} before, {after} after. "
        "The relay in this process over a fresh SQLite file, the local nats-server; each trial drains the "
        "whole log (its entries and checkpoints) to a new stream.",
        "",
        "| trial | window | events/s |",
        "|---|---|---|",
        *(f"| {i} | {w} | {r:,.0f} |" for i, (w, r) in enumerate(trials, 1)),
        "",
        f"Median: window 1 {median[windows[0]]:,.0f}/s, window {windows[-1]} {median[windows[-1]]:,.0f}/s, "
        f"{median[windows[-1]] / median[windows[0]]:.2f}x.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-jetstream-window.md")
    options = parser.parse_args()
    trials, before, after = run(options)
    text = report(trials, before, after, options)
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
