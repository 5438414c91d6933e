"""Does background work slow the API? ``activitylog serve`` started exactly as ``make run`` starts it (workers
on, the embedded SQLite file by default), measured with its workers idle and busy, in alternating rounds of
one run, so the ratios compare like with like.

Setup: ``activitylog migrate`` and ``activitylog demo --entries N`` (as ``make run``), then through the API
one list of ``--recipients`` contacts and ``--broadcasts`` broadcasts to it, all sent and at once paused.
Each round: resume them all (busy: the worker process delivers to ``outbox/``) or pause them all (idle),
wait a moment, then time ``--pages`` first pages (newest first, limit 50) over a rotation of filters and
``--exports`` CSV exports of the whole account (one export of a 20,000-entry demo takes about 0.15 s, too
short to time alone against a busy machine's scheduling; the round's rate is their rows over their time).
A busy round counts only if the broadcasts were still sending at its end.

    .venv/bin/python bench/workers.py [--entries 20000] [--rounds 3] [--database-url postgresql://...]

Writes bench/RESULTS-workers.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

# isort: split
from report import load_average
from server import serve

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FILTERS: tuple[dict[str, str], ...] = (
    {},
    {"actor_type": "api_key"},
    {"action": "broadcast.*"},
    {"action": "send"},
    {"resource_type": "contact"},
    {"q": "spring"},
    {"ip": "10.0.0.0/8"},
)


@dataclass
class Round:
    mode: str  # idle | busy
    page_ms: list[float] = field(default_factory=list)
    export_rows: int = 0
    export_seconds: float = 0.0
    sent_during: int = 0  # messages the workers delivered while the round ran
    seconds: float = 0.0
    valid: bool = True

    @property
    def p50(self) -> float:
        return statistics.median(self.page_ms)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.page_ms, n=20, method="inclusive")[18]

    @property
    def rows_per_second(self) -> float:
        return self.export_rows / self.export_seconds


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def _outbox_count(folder: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(folder))
    except FileNotFoundError:
        return 0


def _set_all(client: httpx.Client, broadcasts: list[str], verb: str) -> None:
    for broadcast_id in broadcasts:
        response = client.post(f"/api/v1/broadcasts/{broadcast_id}/{verb}")
        if response.status_code not in (200, 409):
            raise SystemExit(f"{verb} {broadcast_id}: {response.status_code} {response.text}")


def _statuses(client: httpx.Client, broadcasts: list[str]) -> list[str]:
    return [client.get(f"/api/v1/broadcasts/{b}").json()["status"] for b in broadcasts]


def measure(
    client: httpx.Client, mode: str, pages: int, exports: int, outbox: Path, broadcasts: list[str]
) -> Round:
    result = Round(mode)
    sent_before = _outbox_count(outbox)
    round_started = time.perf_counter()
    for i in range(pages):
        params = {**FILTERS[i % len(FILTERS)], "limit": "50"}
        started = time.perf_counter()
        response = client.get("/api/v1/activity", params=params)
        result.page_ms.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    for _ in range(exports):
        started = time.perf_counter()
        rows = -1  # the header
        with client.stream("GET", "/api/v1/activity/export", params={"format": "csv"}) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                rows += chunk.count(b"\n")  # the demo's cells hold no line breaks
        result.export_seconds += time.perf_counter() - started
        result.export_rows += rows
    result.sent_during = _outbox_count(outbox) - sent_before
    result.seconds = time.perf_counter() - round_started
    if mode == "busy":
        result.valid = "sending" in _statuses(client, broadcasts) and result.sent_during > 0
    return result


def setup(client: httpx.Client, recipients: int, count: int) -> list[str]:
    list_id = client.post("/api/v1/lists", json={"name": "Bench audience"}).json()["id"]
    for start in range(0, recipients, 5000):
        rows = [{"email": f"bench{i}@example.net"} for i in range(start, min(recipients, start + 5000))]
        response = client.post(f"/api/v1/lists/{list_id}/contacts/import", json=rows)
        assert response.status_code == 200, response.text
    broadcasts = []
    for i in range(count):
        body = {
            "name": f"Bench send {i}",
            "subject": "Bench",
            "from_email": "news@example.com",
            "list_id": list_id,
            "text": "Hello from the benchmark.",
        }
        broadcast_id = client.post("/api/v1/broadcasts", json=body).json()["id"]
        assert client.post(f"/api/v1/broadcasts/{broadcast_id}/send").status_code == 200
        assert client.post(f"/api/v1/broadcasts/{broadcast_id}/pause").status_code == 200
        broadcasts.append(broadcast_id)
    return broadcasts


def run(options: argparse.Namespace) -> tuple[list[Round], dict[str, object]]:
    work = Path(tempfile.mkdtemp(prefix="activitylog-bench-workers-"))
    url = options.database_url or f"sqlite:///{work / 'activitylog.db'}"
    env = {
        **os.environ,
        "ACTIVITYLOG_DATABASE_URL": url,
        "ACTIVITYLOG_KEY_DIR": str(work / "keys"),
        "ACTIVITYLOG_DATA_KEY_FILE": str(work / "data.key"),
    }
    env.pop("ACTIVITYLOG_SIGNING_KEY_FILE", None)
    if options.worker_nice is not None:
        env["ACTIVITYLOG_WORKER_NICE"] = str(options.worker_nice)
    load_before = load_average()
    try:
        _run([str(BIN / "activitylog"), "migrate"], env, work)
        started = time.perf_counter()
        out = _run(
            [str(BIN / "activitylog"), "demo", "--entries", str(options.entries), "--no-migrate"], env, work
        )
        demo_seconds = time.perf_counter() - started
        demo = json.loads(out.strip().splitlines()[-1])
        port = options.port
        outbox = work / "outbox"
        rounds: list[Round] = []
        with serve(env["ACTIVITYLOG_DATABASE_URL"], env, workdir=work, port=port):
            headers = {"Authorization": f"Bearer {demo['api_key']}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120) as client:
                broadcasts = setup(client, options.recipients, options.broadcasts)
                measure(client, "idle", options.pages // 4, 1, outbox, broadcasts)  # warm the caches
                for _ in range(options.rounds):
                    for mode in ("idle", "busy"):
                        _set_all(client, broadcasts, "pause" if mode == "idle" else "resume")
                        time.sleep(3.0)  # the worker picks the resumed ones up within its interval
                        rounds.append(
                            measure(client, mode, options.pages, options.exports, outbox, broadcasts)
                        )
                        r = rounds[-1]
                        late = "" if r.valid else " (NOT sending at the end)"
                        print(
                            f"{mode}: p50 {r.p50:.1f} ms, p95 {r.p95:.1f} ms, "
                            f"export {r.rows_per_second:,.0f} rows/s, {r.sent_during} messages sent{late}",
                            file=sys.stderr,
                        )
                _set_all(client, broadcasts, "pause")
        info = {
            "engine": url.split(":", 1)[0],
            "entries": options.entries,
            "demo_seconds": round(demo_seconds, 1),
            "recipients": options.recipients,
            "broadcasts": options.broadcasts,
            "pages": options.pages,
            "exports": options.exports,
            "nice": env.get("ACTIVITYLOG_WORKER_NICE", "10 (default)"),
            "load": f"{load_before} before, {load_average()} after",
        }
        return rounds, info
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


def report(rounds: list[Round], info: dict[str, object]) -> str:
    idle = [r for r in rounds if r.mode == "idle"]
    busy = [r for r in rounds if r.mode == "busy" and r.valid]
    pairs = list(zip(idle, [r for r in rounds if r.mode == "busy"], strict=True))
    lines = [
        "# Workers busy vs idle: the API as `make run` serves it",
        "",
        f"`.venv/bin/python bench/workers.py` on {platform.node() or 'a machine'} ({os.cpu_count()} CPUs), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {info['load']}. "
        "`activitylog serve` as `make run` starts it (its worker process on, nice "
        f"{info['nice']}), over a {info['engine']} demo of {info['entries']:,} entries (seeded in "
        f"{info['demo_seconds']} s); busy = {info['broadcasts']} broadcasts to {info['recipients']:,} "
        "recipients each, being delivered to `outbox/` by the worker process. Each round: "
        f"{info['pages']} first pages (limit 50, rotating over {len(FILTERS)} filters) and "
        f"{info['exports']} CSV export(s) of the whole account (the round's rate: their rows over their "
        "time); idle and busy rounds alternate, in one run.",
        "",
        "| round | mode | first page p50 ms | p95 ms | export rows/s | messages sent in the round (per s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds, 1):
        flag = "" if r.valid else " (not sending at the end: left out)"
        rate = r.sent_during / r.seconds if r.seconds else 0.0
        lines.append(
            f"| {i} | {r.mode}{flag} | {r.p50:.1f} | {r.p95:.1f} | {r.rows_per_second:,.0f} "
            f"| {r.sent_during:,} ({rate:,.0f}/s) |"
        )
    if busy and idle:
        p95_ratio = statistics.median(b.p95 / a.p95 for a, b in pairs if b.valid)
        rate_ratio = statistics.median(a.rows_per_second / b.rows_per_second for a, b in pairs if b.valid)
        lines += [
            "",
            "| median over rounds | idle | busy | busy / idle (median of same-run pairs) |",
            "|---|---|---|---|",
            f"| first page p95 ms | {statistics.median(r.p95 for r in idle):.1f} | "
            f"{statistics.median(r.p95 for r in busy):.1f} | {p95_ratio:.2f}x slower |",
            f"| first page p50 ms | {statistics.median(r.p50 for r in idle):.1f} | "
            f"{statistics.median(r.p50 for r in busy):.1f} | "
            f"{statistics.median(b.p50 / a.p50 for a, b in pairs if b.valid):.2f}x slower |",
            f"| export rows/s | {statistics.median(r.rows_per_second for r in idle):,.0f} | "
            f"{statistics.median(r.rows_per_second for r in busy):,.0f} | {rate_ratio:.2f}x slower |",
            "",
            f"Target: within 1.2x. First page p95 {'meets' if p95_ratio <= 1.2 else 'MISSES'} it "
            f"({p95_ratio:.2f}x); export rate {'meets' if rate_ratio <= 1.2 else 'MISSES'} it "
            f"({rate_ratio:.2f}x).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--recipients", type=int, default=20_000)  # enough to keep every busy round busy
    parser.add_argument("--broadcasts", type=int, default=8)
    parser.add_argument("--pages", type=int, default=140)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=int, default=5, help="CSV exports timed per round")
    parser.add_argument("--port", type=int, default=8731)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temporary folder")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "RESULTS-workers.md")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--worker-nice", type=int, default=None, help="ACTIVITYLOG_WORKER_NICE for serve")
    parser.add_argument(
        "--append", action="store_true", help="add to the results file instead of replacing it"
    )
    options = parser.parse_args()
    rounds, info = run(options)
    text = report(rounds, info)
    if options.append and options.output.exists():
        text = (
            options.output.read_text()
            + "\n"
            + text.replace("# Workers busy vs idle", "## Workers busy vs idle")
        )
    options.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
