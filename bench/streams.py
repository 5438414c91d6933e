"""Streams under load, with ``activitylog serve`` started as ``make run`` starts it (its worker process runs
the relay), over the embedded SQLite file by default:

1. **Lag** from commit to receipt at a sustained rate (``--rate``, default 200 entries/s, for
   ``--seconds``), to one webhook receiver and to NATS JetStream: receipt time minus the entry's
   ``occurred_at`` (taken under the chain lock, just before the commit, so a little more than the lag).
2. **Throughput**: a paused stream with a backlog of ``--backlog`` entries is resumed; events/s is the
   backlog over the time from the first receipt to the last (webhook, then JetStream).
3. **The API beside streams**: first-page p95 of ``GET /api/v1/activity`` (limit 50, rotating filters)
   in alternating rounds with no stream, with a healthy webhook stream, and with three failing
   destinations (one answering 503, one that never answers until the timeout, one refusing connections),
   entries being written at ``--background-rate`` in every round so the relay has work.

The receivers run in processes of their own (``--receiver``/``--subscriber``), so their clocks are not
held up by the load generator. Writes bench/RESULTS-streams.md (or ``--output``).

    .venv/bin/python bench/streams.py [--rate 200] [--seconds 20] [--backlog 5000] [--rounds 3]
    .venv/bin/python bench/streams.py --database-url postgresql://…/empty_db --append
    .venv/bin/python bench/streams.py --parts throughput,api   # some of the three
    .venv/bin/python bench/streams.py --lag-writer batch:10    # the lag at a rate the API can't write here
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from report import load_average  # noqa: E402
from server import serve  # noqa: E402
from workers import _run  # noqa: E402

BIN = Path(sys.executable).parent
NATS_URL = os.environ.get("ACTIVITYLOG_NATS_URL", "nats://127.0.0.1:4222")
FILTERS: tuple[dict[str, str], ...] = (
    {},
    {"actor_type": "api_key"},
    {"action": "list.*"},
    {"action": "create"},
    {"q": "bench"},
)


def _epoch(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp()


# ---- receivers, each in a process of its own ----
def receiver_main(port: int, out: Path, mode: str) -> None:
    """A webhook receiver: one line per event, ``<webhook-id>\\t<occurred_at or ->\\t<receipt time>``."""
    sink = out.open("a", buffering=1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            now = time.time()
            if mode == "hang":
                time.sleep(3600)
            status = 503 if mode == "fail" else 200
            if status == 200:
                event = json.loads(body)
                at = event["data"].get("occurred_at", "-") if event["type"] == "activity.entry" else "-"
                with lock:
                    sink.write(f"{self.headers['webhook-id']}\t{at}\t{now}\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def subscriber_main(subject: str, out: Path) -> None:
    """A NATS subscriber on ``<subject>.>``: the same lines as the webhook receiver's."""
    import nats  # noqa: PLC0415

    async def run() -> None:
        nc = await nats.connect(NATS_URL)
        sink = out.open("a", buffering=1)

        async def got(msg: Any) -> None:
            now = time.time()
            event = json.loads(msg.data)
            at = event["data"].get("occurred_at", "-") if event["type"] == "activity.entry" else "-"
            sink.write(f"{msg.headers.get('Nats-Msg-Id')}\t{at}\t{now}\n")

        await nc.subscribe(f"{subject}.>", cb=got)
        (out.parent / f"{out.name}.ready").write_text("1")
        while True:
            await asyncio.sleep(3600)

    asyncio.run(run())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def helper(*args: str) -> Iterator[None]:
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def _received(path: Path) -> list[tuple[str, float | None, float]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            rows.append((parts[0], None if parts[1] == "-" else _epoch(parts[1]), float(parts[2])))
    return rows


def _entries_received(path: Path) -> dict[str, tuple[float, float]]:
    """Entry events by id (the first receipt of each): ``(occurred_at, received)``."""
    seen: dict[str, tuple[float, float]] = {}
    for event_id, at, received in _received(path):
        if at is not None:
            seen.setdefault(event_id, (at, received))
    return seen


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


# ---- load ----
class Writer:
    """Entries at a steady rate through the API (one list created per entry, over a few connections)."""

    def __init__(self, base: str, key: str, threads: int = 6) -> None:
        limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
        headers = {"Authorization": f"Bearer {key}"}
        self.client = httpx.Client(base_url=base, headers=headers, timeout=60, limits=limits)
        self.pool = ThreadPoolExecutor(threads)
        self.count = 0

    def _one(self, i: int) -> None:
        response = self.client.post("/api/v1/lists", json={"name": f"bench {i} {uuid.uuid4().hex[:6]}"})
        assert response.status_code == 201, response.text

    def write(self, rate: float, seconds: float) -> float:
        """Submit ``rate`` entries a second for ``seconds``; returns the rate achieved."""
        total = int(rate * seconds)
        started = time.monotonic()
        futures = []
        for i in range(total):
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(self.pool.submit(self._one, self.count + i))
        for f in futures:
            f.result()
        self.count += total
        return total / (time.monotonic() - started)

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()


class BatchWriter:
    """Entries at a steady rate through the recorder itself, ``per`` list creations a transaction, in a
    process of its own (``--batch-writer``): the rate the relay is asked to follow, without the API's
    own cost per request in the way (one single-entry mutation per request tops out below 200/s on a
    2-CPU machine that also runs the relay and the receivers)."""

    def __init__(self, env: dict[str, str], account_id: str, per: int) -> None:
        self.env, self.account_id, self.per = env, account_id, per

    def write(self, rate: float, seconds: float) -> float:
        args = [sys.executable, __file__, "--batch-writer", self.account_id, str(rate), str(seconds)]
        done = subprocess.run(
            [*args, str(self.per)], env=self.env, capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        pass


def batch_writer_main(account_id: str, rate: float, seconds: float, per: int) -> None:
    """``rate`` entries a second for ``seconds``, ``per`` a transaction; prints the rate achieved."""
    from activitylog.config import Settings  # noqa: PLC0415
    from activitylog.db.base import connect  # noqa: PLC0415
    from activitylog.db.models import MailingList  # noqa: PLC0415
    from activitylog.log.record import RequestContext  # noqa: PLC0415
    from activitylog.services import crud  # noqa: PLC0415
    from activitylog.services.uow import SYSTEM_CLI, UnitOfWork  # noqa: PLC0415

    db = connect(Settings().database_url)
    total, started = int(rate * seconds), time.monotonic()
    for first in range(0, total, per):
        delay = started + first / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_CLI, context=RequestContext())
        with uow:
            for i in range(first, min(first + per, total)):
                crud.create(uow, MailingList, "lst", {"name": f"batch {i} {uuid.uuid4().hex[:6]}"})
            uow.commit()
    print(total / (time.monotonic() - started))


def _quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def lag_run(
    api: httpx.Client, writer: Writer | BatchWriter, body: dict[str, Any], out: Path, options: Any
) -> dict[str, Any]:
    before = set(_entries_received(out))
    stream = api.post("/api/v1/streams", json=body).json()
    time.sleep(1.0)
    achieved = writer.write(options.rate, options.seconds)
    want = int(options.rate * options.seconds)  # and the stream's own create entry
    _wait(lambda: len(set(_entries_received(out)) - before) > want, 300, "the lag run's events")
    got = [v for k, v in _entries_received(out).items() if k not in before]
    lags = [max(0.0, received - at) * 1000 for at, received in got]
    api.delete(f"/api/v1/streams/{stream['id']}")
    return {
        "target": body["type"],
        "achieved": achieved,
        "events": len(got),
        "p50": _quantile(lags, 0.50),
        "p95": _quantile(lags, 0.95),
        "p99": _quantile(lags, 0.99),
        "max": max(lags),
    }


def throughput_run(
    api: httpx.Client, writer: Writer, body: dict[str, Any], out: Path, options: Any
) -> dict[str, Any]:
    stream = api.post("/api/v1/streams", json=body).json()
    api.post(f"/api/v1/streams/{stream['id']}/pause")
    time.sleep(0.5)
    writer.write(options.backlog / 10, 10)  # as fast as the API takes them, about
    before = set(_entries_received(out))
    api.post(f"/api/v1/streams/{stream['id']}/resume")
    _wait(lambda: len(set(_entries_received(out)) - before) >= options.backlog, 900, "the backlog to drain")
    got = sorted(received for k, (_, received) in _entries_received(out).items() if k not in before)
    seconds = got[-1] - got[0]
    api.delete(f"/api/v1/streams/{stream['id']}")
    return {"target": body["type"], "events": len(got), "seconds": seconds, "rate": (len(got) - 1) / seconds}


def api_round(api: httpx.Client, writer: Writer, mode: str, options: Any) -> dict[str, Any]:
    done = threading.Event()

    def background() -> None:
        while not done.is_set():
            writer.write(options.background_rate, 1.0)

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    time.sleep(1.0)
    pages = []
    for i in range(options.pages):
        params = {**FILTERS[i % len(FILTERS)], "limit": "50"}
        started = time.perf_counter()
        response = api.get("/api/v1/activity", params=params)
        pages.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    done.set()
    thread.join()
    streams = api.get("/api/v1/streams").json()["data"]
    return {
        "mode": mode,
        "p50": statistics.median(pages),
        "p95": _quantile(pages, 0.95),
        "states": sorted(s["state"] for s in streams),
        "lags": [s["lag_seconds"] for s in streams],
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="activitylog-bench-streams-"))
    url = options.database_url or f"sqlite:///{work / 'activitylog.db'}"
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": url,
        "ACTIVITYLOG_KEY_DIR": str(work / "keys"),
        "ACTIVITYLOG_DATA_KEY_FILE": str(work / "data.key"),
        "ACTIVITYLOG_STREAM_ALLOW_PRIVATE": "true",  # the receivers are on loopback
        "ACTIVITYLOG_STREAM_TIMEOUT_SECONDS": "5",
    }
    env.pop("ACTIVITYLOG_SIGNING_KEY_FILE", None)
    results: dict[str, Any] = {"engine": url.split(":", 1)[0], "load_before": load_average()}
    subject = f"bench{uuid.uuid4().hex[:6]}"
    try:
        _run([str(BIN / "activitylog"), "migrate"], env, work)
        printed = _run(
            [str(BIN / "activitylog"), "demo", "--entries", str(options.entries), "--no-migrate"], env, work
        )
        demo = json.loads(printed.strip().splitlines()[-1])
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        hook_port, fail_port, hang_port = _free_port(), _free_port(), _free_port()
        hook_file, nats_file = work / "webhook.tsv", work / "nats.tsv"
        with (
            serve(env["ACTIVITYLOG_DATABASE_URL"], env, workdir=work, port=port),
            helper("--receiver", str(hook_port), str(hook_file), "ok"),
            helper("--receiver", str(fail_port), str(work / "fail.tsv"), "fail"),
            helper("--receiver", str(hang_port), str(work / "hang.tsv"), "hang"),
            helper("--subscriber", subject, str(nats_file)),
        ):
            _wait(lambda: (work / "nats.tsv.ready").exists(), 30, "the NATS subscriber")
            headers = {"Authorization": f"Bearer {demo['api_key']}"}
            api = httpx.Client(base_url=base, headers=headers, timeout=120)
            writer = Writer(base, demo["api_key"])
            lag_writer: Writer | BatchWriter = writer
            if options.lag_writer.startswith("batch:"):
                lag_writer = BatchWriter(env, demo["account_id"], int(options.lag_writer.split(":")[1]))
            hook = {"name": "bench webhook", "type": "webhook", "url": f"http://127.0.0.1:{hook_port}/hook"}
            js = {"name": "bench jetstream", "type": "nats", "subject": subject}
            results["lag"], results["throughput"], results["rounds"] = [], [], []
            for part in ("lag", "throughput"):
                if part in options.parts:
                    for body, out in ((hook, hook_file), (js, nats_file)):
                        print(f"{part}: {body['type']}", file=sys.stderr)
                        if part == "lag":
                            results[part].append(lag_run(api, lag_writer, body, out, options))
                        else:
                            results[part].append(throughput_run(api, writer, body, out, options))
            failing = [
                {"name": "503", "type": "webhook", "url": f"http://127.0.0.1:{fail_port}/hook"},
                {"name": "hangs", "type": "webhook", "url": f"http://127.0.0.1:{hang_port}/hook"},
                {"name": "refused", "type": "webhook", "url": f"http://127.0.0.1:{_free_port()}/hook"},
            ]
            rounds = []
            if "api" in options.parts:
                api_round(api, writer, "warm-up", options)
            for _ in range(options.rounds if "api" in options.parts else 0):
                for mode, bodies in (("none", []), ("healthy", [hook]), ("failing", failing)):
                    ids = [api.post("/api/v1/streams", json=b).json()["id"] for b in bodies]
                    rounds.append(api_round(api, writer, mode, options))
                    print(f"api {mode}: p95 {rounds[-1]['p95']:.1f} ms", file=sys.stderr)
                    for sid in ids:
                        api.delete(f"/api/v1/streams/{sid}")
            results["rounds"] = rounds
            writer.close()
            api.close()
        results["load_after"] = load_average()
        return results
    finally:
        _drop_jetstream(subject)
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


def _drop_jetstream(subject: str) -> None:
    """The JetStream stream the relay created for the bench's subject goes with the bench."""
    import nats  # noqa: PLC0415

    async def drop() -> None:
        nc = await nats.connect(NATS_URL)
        try:
            await nc.jetstream().delete_stream(subject.upper())
        except Exception:  # not created, or already gone
            pass
        finally:
            await nc.close()

    asyncio.run(drop())


def report(r: dict[str, Any], options: argparse.Namespace) -> str:
    lines = [
        "# Streams: lag, throughput, and the API beside a failing destination",
        "",
        f"`.venv/bin/python bench/streams.py` on {platform.node() or 'a machine'} ({os.cpu_count()} CPUs, "
        f"shared with other work), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
        f"{r['load_before']} before, {r['load_after']} after. `activitylog serve` as `make run` starts it "
        f"(the relay in its worker process), {r['engine']}, a demo account of {options.entries:,} entries; "
        "entries written through the API (one list created per entry, 6 connections)"
        + (
            ""
            if options.lag_writer == "api"
            else f", except in the lag part: the recorder in a process of its own, "
            f"{options.lag_writer.split(':')[1]} list creations a transaction"
        )
        + "; receivers and the NATS subscriber in processes of their own, on loopback; JetStream is the "
        "local nats-server.",
        "",
    ]
    if r["lag"]:
        lines += [
            f"## Lag from commit to receipt at {options.rate:g} entries/s for {options.seconds:g} s",
            "",
            "| destination | entries/s written | events | p50 ms | p95 ms | p99 ms | max ms "
            "| target p95 < 1 s |",
            "|---|---|---|---|---|---|---|---|",
        ]
    for x in r["lag"]:
        lines.append(
            f"| {x['target']} | {x['achieved']:.0f} | {x['events']:,} | {x['p50']:.0f} | {x['p95']:.0f} | "
            f"{x['p99']:.0f} | {x['max']:.0f} | {'met' if x['p95'] < 1000 else 'MISSED'} |"
        )
    targets = {"webhook": 500, "nats": 2000}
    if r["throughput"]:
        lines += [
            "",
            f"## Throughput: a backlog of {options.backlog:,} entries, drained",
            "",
            "| destination | events | seconds | events/s | target |",
            "|---|---|---|---|---|",
        ]
    for x in r["throughput"]:
        t = targets[x["target"]]
        met = "met" if x["rate"] >= t else "MISSED"
        lines.append(
            f"| {x['target']} | {x['events']:,} | {x['seconds']:.1f} | {x['rate']:,.0f} | ≥ {t:,}/s: {met} |"
        )
    rounds = r["rounds"]
    if not rounds:
        return "\n".join(lines) + "\n"
    by = {m: [x for x in rounds if x["mode"] == m] for m in ("none", "healthy", "failing")}
    lines += [
        "",
        f"## The API's first page with streams running, and with failing destinations "
        f"({options.pages} pages a round, {options.background_rate:g} entries/s written meanwhile)",
        "",
        "| round | streams | first page p50 ms | p95 ms | stream states at the end |",
        "|---|---|---|---|---|",
    ]
    for i, x in enumerate(rounds, 1):
        lines.append(
            f"| {i} | {x['mode']} | {x['p50']:.1f} | {x['p95']:.1f} | {', '.join(x['states']) or '-'} |"
        )
    none = statistics.median(x["p95"] for x in by["none"])
    for mode in ("healthy", "failing"):
        p95 = statistics.median(x["p95"] for x in by[mode])
        ratio = p95 / none
        lines.append("")
        lines.append(
            f"Median p95, {mode} vs none: {p95:.1f} ms vs {none:.1f} ms, {ratio:.2f}x "
            f"({'within' if ratio <= 1.10 else 'NOT within'} the 10% target)."
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        receiver_main(int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--subscriber":
        subscriber_main(sys.argv[2], Path(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--batch-writer":
        batch_writer_main(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=5_000, help="the demo account's size")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument(
        "--lag-writer",
        default="api",
        help="how the lag part writes: 'api' (one list per request, 6 connections) or 'batch:N' (the "
        "recorder in a process of its own, N entries a transaction)",
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--backlog", type=int, default=5_000)
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--background-rate", type=float, default=20.0)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-streams.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--parts",
        type=lambda v: set(v.split(",")),
        default={"lag", "throughput", "api"},
        help="which of lag,throughput,api to run (default: all)",
    )
    parser.add_argument(
        "--append", action="store_true", help="add to the results file instead of replacing it"
    )
    options = parser.parse_args()
    text = report(run(options), options)
    if options.append and options.output.exists():
        text = (
            options.output.read_text()
            + "\n"
            + text.replace("# Streams:", "## Streams:", 1).replace("\n## ", "\n### ")
        )
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
