"""CSV export: ``GET /api/v1/activity/export`` beside the raw engine's own CSV export of the same slice.

API: the real server process streams the slice to an httpx client that counts bytes and lines and throws
them away; the peak RSS of the web process serving it is read from ``/proc`` (``server.MemoryProbe``). Raw:
PostgreSQL's ``COPY (SELECT …) TO STDOUT WITH (FORMAT csv, HEADER)`` read through psycopg (peak RSS of the
backend process, which counts the shared buffers it touched); SQLite's ``sqlite3`` command-line shell in
``.mode csv`` with ``.headers on``, its output piped to the benchmark (peak RSS from ``wait4``). The raw
side selects the contract's columns as stored — no formula safety, the engine's own timestamp text — so it
is the most an export could hope for. API and raw runs alternate.
"""

from __future__ import annotations

import io
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import httpx
import psycopg

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from seeding import Seeded
from server import MemoryProbe, Server
from stores import Store

# The contract's CSV header (API.md, "CSV").
CSV_COLUMNS = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "summary", "changes",
    "request_id", "prev_hash", "hash", "salts",
)  # fmt: skip
CHUNK = 1 << 20
END_MARK = "-- end of export --"


@dataclass(frozen=True)
class Sample:
    rows: int
    bytes: int
    seconds: float
    peak_kb: int | None  # peak RSS of the process doing the export

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


@dataclass
class ExportResult:
    engine: str
    name: str
    params: dict[str, str]
    raw_tool: str
    api: list[Sample] = field(default_factory=list)
    raw: list[Sample] = field(default_factory=list)
    header: str = ""  # the API's first line, checked against the contract
    server_rss_before_kb: int = 0

    @property
    def api_rate(self) -> float:
        return statistics.median(s.rate for s in self.api)

    @property
    def raw_rate(self) -> float:
        return statistics.median(s.rate for s in self.raw)

    @property
    def api_peak_kb(self) -> int:
        return max(s.peak_kb or 0 for s in self.api)

    @property
    def raw_peak_kb(self) -> int | None:
        peaks = [s.peak_kb for s in self.raw if s.peak_kb]
        return max(peaks) if peaks else None

    @property
    def header_ok(self) -> bool:
        return self.header == ",".join(CSV_COLUMNS)


def _iso(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _literal(store: Store, instant: datetime) -> str:
    return f"'{store.bind_time(instant)}'" if store.is_sqlite else f"'{_iso(instant)}'::timestamptz"


def slices(store: Store, seeded: Seeded) -> list[tuple[str, dict[str, str], str]]:
    """(name, API filter, the raw WHERE clause): the big account's whole slice, and a 90-day window of it."""
    account = f"account_id = '{seeded.account_id}'"
    since = seeded.start + timedelta(days=200)
    until = since + timedelta(days=90)
    window = (
        f"{account} AND occurred_at >= {_literal(store, since)} AND occurred_at < {_literal(store, until)}"
    )
    return [
        ("whole account", {}, account),
        ("90-day window", {"since": _iso(since), "until": _iso(until)}, window),
    ]


def _api(client: httpx.Client, server: Server, params: dict[str, str]) -> tuple[Sample, str]:
    probe = MemoryProbe(server.web_pids())
    probe.start()
    began = time.perf_counter()
    size = lines = 0
    head = b""
    with client.stream("GET", "/api/v1/activity/export", params={**params, "format": "csv"}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw(CHUNK):
            if len(head) < 4096:
                head += chunk[:4096]
            size += len(chunk)
            lines += chunk.count(b"\n")
    seconds = time.perf_counter() - began
    header = head.split(b"\n", 1)[0].decode().rstrip("\r")
    return Sample(lines - 1, size, seconds, probe.stop()), header


def _select(where: str) -> str:
    return f"SELECT {', '.join(CSV_COLUMNS)} FROM activity_entries WHERE {where} ORDER BY seq"


def _raw_postgres(store: Store, where: str) -> Sample:
    with psycopg.connect(store.raw_target, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        probe = MemoryProbe([conn.info.backend_pid])
        probe.start()
        began = time.perf_counter()
        size = lines = 0
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY ({_select(where)}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
        ):
            for block in copy:
                size += len(block)
                lines += bytes(block).count(b"\n")
        seconds = time.perf_counter() - began
        return Sample(lines - 1, size, seconds, probe.stop())


def _raw_sqlite(store: Store, where: str) -> Sample:
    """The shell reads its script from a pipe kept open, so after the query's output and an end marker it
    is still alive and its own high-water mark can be read (``wait4``'s figure would include the
    benchmark's memory, inherited at fork)."""
    script = f".headers on\n.mode csv\n.output stdout\n{_select(where)};\n.print {END_MARK}\n"
    began = time.perf_counter()
    proc = subprocess.Popen(
        ["sqlite3", "-batch", "-bail", "-readonly", store.raw_target],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    stdout = cast(io.BufferedReader, proc.stdout)  # what Popen gives for a pipe: read1 answers at once
    probe = MemoryProbe([proc.pid])
    probe.start()
    proc.stdin.write(script.encode())
    proc.stdin.flush()
    size = lines = 0
    tail = b""
    while not tail.endswith(END_MARK.encode() + b"\n"):
        chunk = stdout.read1(CHUNK)
        if not chunk:
            raise RuntimeError(f"sqlite3 stopped early (exit {proc.wait()})")
        size += len(chunk)
        lines += chunk.count(b"\n")
        tail = (tail + chunk)[-64:]
    seconds = time.perf_counter() - began
    peak = probe.stop()
    proc.stdin.close()
    if proc.wait(timeout=30):
        raise RuntimeError(f"sqlite3 exited with {proc.returncode}")
    return Sample(lines - 2, size - len(END_MARK) - 1, seconds, peak)  # less the header and the marker


def raw_tool(store: Store) -> str:
    if store.is_sqlite:
        found = shutil.which("sqlite3")
        if not found:
            raise SystemExit("the sqlite3 command-line shell is needed: apt-get install -y sqlite3")
        version = subprocess.run([found, "--version"], capture_output=True, text=True, check=True).stdout
        return f"sqlite3 CLI {version.split()[0]}, .mode csv"
    return "COPY … TO STDOUT WITH (FORMAT csv) via psycopg"


def run_exports(
    store: Store, seeded: Seeded, client: httpx.Client, server: Server, *, runs: int
) -> list[ExportResult]:
    tool = raw_tool(store)
    results = []
    for name, params, where in slices(store, seeded):
        result = ExportResult(store.engine, name, params, tool, server_rss_before_kb=server.rss_kb())
        for _ in range(runs):
            sample, result.header = _api(client, server, params)
            result.api.append(sample)
            result.raw.append(_raw_sqlite(store, where) if store.is_sqlite else _raw_postgres(store, where))
        print(
            f"    export {name}: API {result.api_rate:,.0f} rows/s, raw {result.raw_rate:,.0f} rows/s,"
            f" server peak {result.api_peak_kb / 1024:.0f} MB",
            flush=True,
        )
        results.append(result)
    return results
