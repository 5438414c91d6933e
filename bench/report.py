"""bench/RESULTS.md and bench/PLANS.md: what was measured, on what machine, the tables and the plans —
written fresh by every run."""

from __future__ import annotations

import os
import platform
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from appends import AppendResult
from exports import ExportResult
from queries import PAGE, WARMUP, QueryResult, QueryRun
from seeding import Seeded

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
PLANS = HERE / "PLANS.md"
PACKAGES = ("activitylog", "sqlalchemy", "fastapi", "starlette", "uvicorn", "psycopg", "httpx")
P95_TARGET_MS, EXPORT_SHARE_TARGET, RSS_TARGET_MB, APPEND_TARGET = 20.0, 0.5, 150, 2000

NOTES = (
    "- Every ratio compares the same database, schema, indexes and data; API/raw requests, export runs "
    "and recorder/raw append rounds alternate, so load from other processes weighs on both sides alike. A "
    "load average above the CPU count makes absolute figures pessimistic; the ratios hold up better.",
    "- Seeded rows are bulk-loaded but are what the recorder writes (the canonical JSON is checked against "
    "`log.chain` every 4,096 rows, and the big account's whole chain through `GET /api/v1/activity/verify` "
    "before timing). Secondary indexes are dropped for the load and rebuilt from their own DDL after it; "
    "triggers (the SQLite FTS feed) stay in place. PostgreSQL is `VACUUM ANALYZE`d after seeding (what "
    "autovacuum soon does); SQLite is not `ANALYZE`d unless the application does it.",
    "- *raw* query = the statements the application sends for that page (captured at the driver) replayed "
    "through the bare driver: on PostgreSQL with psycopg's automatic prepare off, so each run gets a custom "
    "plan. The API's pooled connections prepare after 5 runs, and PostgreSQL may then use a *generic* plan; "
    "its execution time (EXPLAIN ANALYZE EXECUTE under `plan_cache_mode = force_generic_plan`) is shown "
    "beside the custom plan's. On SQLite the raw side has SQLite's built-in `lower()`, not the "
    "application's Python one.",
    "- The server is `activitylog serve --no-migrate`, started as `make run` starts it: one web process per "
    "CPU, the worker process beside them (derived counts, alert detectors and checkpoints; the counts and "
    "detectors start at the seeded head), one JSON log line per request. The export's peak RSS is that "
    "of the web process serving it: the kernel's high-water mark (VmHWM, reset through "
    "`/proc/<pid>/clear_refs`) cross-checked by 20 ms VmRSS sampling. The raw PostgreSQL backend's peak "
    "RSS includes the shared buffers it touched.",
    "- Raw exports select the contract's columns as stored (no formula safety, the engine's own timestamp "
    "text), so they are the ceiling an export can approach; the sqlite3 shell's output is piped to the "
    "benchmark like the other two streams. Every API export also appends its own `activity_log.export` "
    "entry, so whole-account row counts grow by one per run.",
    "- Percentiles are nearest-rank: with 60 samples, p95 is the 3rd-slowest request.",
)


@dataclass
class Report:
    started: datetime
    finished: datetime
    settings: dict[str, str]
    load_start: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_end: tuple[float, float, float] = (0.0, 0.0, 0.0)
    engines: dict[str, dict[str, str]] = field(default_factory=dict)
    seeded: dict[str, Seeded] = field(default_factory=dict)
    rows: dict[str, dict[str, str]] = field(default_factory=dict)
    appends: list[AppendResult] = field(default_factory=list)
    queries: list[QueryRun] = field(default_factory=list)
    exports: list[ExportResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average, sampled at each step


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, for a result's header (the machines are shared)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        (int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0
    )
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": cpu,
        "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "packages": ", ".join(f"{p} {_version(p)}" for p in PACKAGES),
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    marks = [("---:" if a == "r" else "---") for a in (align or "l" * len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(marks) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _kv(rows: dict[str, str], left: str) -> list[str]:
    return _table([left, ""], [[k, v] for k, v in rows.items()])


def _ok(good: bool) -> str:
    return "✅" if good else "❌"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _params(params: dict[str, str]) -> str:
    shown = [f"{k}={v[:12] + '…' if len(v) > 16 else v}" for k, v in params.items()]
    return "`" + "&".join(shown) + "`" if shown else "—"


# --- the targets -----------------------------------------------------------------------------------------


def _target_rows(report: Report) -> list[list[str]]:
    engines = list(report.engines)
    rows: list[list[str]] = []

    def row(label: str, cell: dict[str, str]) -> None:
        rows.append([label, *(cell.get(e, "—") for e in engines)])

    worst: dict[str, str] = {}
    for run in report.queries:
        r = max(run.results, key=lambda r: percentile(r.api_ms, 95))
        p95 = percentile(r.api_ms, 95)
        over = sum(percentile(x.api_ms, 95) >= P95_TARGET_MS for x in run.results)
        worst[run.engine] = (
            f"{_ok(over == 0)} worst {p95:,.1f} ms ({r.name}); {over} of {len(run.results)} over"
        )
    row(f"query: API p95 < {P95_TARGET_MS:g} ms, every filter and a page 1,000 deep", worst)
    share: dict[str, str] = {}
    rss: dict[str, str] = {}
    for e in report.exports:
        ratio = e.api_rate / e.raw_rate
        share.setdefault(e.engine, "")
        share[e.engine] += (
            f"{_ok(ratio >= EXPORT_SHARE_TARGET)} {e.name}: {e.api_rate:,.0f} vs {e.raw_rate:,.0f} rows/s "
            f"= {ratio:.0%}<br>"
        )
        rows_n = max(s.rows for s in e.api)
        rss.setdefault(e.engine, "")
        rss[e.engine] += (
            f"{_ok(e.api_peak_kb / 1024 < RSS_TARGET_MB)} {e.name} ({rows_n:,} rows): "
            f"{e.api_peak_kb / 1024:,.0f} MB<br>"
        )
    row(f"export: API ≥ {EXPORT_SHARE_TARGET:.0%} of the raw engine's CSV rows/s", share)
    row(f"export: server peak RSS < {RSS_TARGET_MB} MB (the target is for a 1M-row slice)", rss)
    single: dict[str, str] = {}
    growth: dict[str, str] = {}
    for engine in engines:
        by = {a.writers: a for a in report.appends if a.engine == engine}
        if 1 in by:
            rate = by[1].recorder_median
            single[engine] = f"{_ok(rate >= APPEND_TARGET)} {rate:,.0f}/s (raw {by[1].raw_median:,.0f}/s)"
        if 1 in by and max(by) > 1:
            top = by[max(by)]
            factor = top.recorder_median / by[1].recorder_median
            growth[engine] = (
                f"{_ok(factor > 1.2)} {max(by)} writers: {factor:.2f} times one writer "
                f"(raw {top.raw_median / by[1].raw_median:.2f} times)"
            )
    row(f"append: ≥ {APPEND_TARGET:,} entries/s, single writer, durable", single)
    row("append: throughput grows with writers on different accounts", growth)
    return rows


def _targets(report: Report) -> list[str]:
    engines = list(report.engines)
    out = ["## Against the issue's targets", ""]
    if not engines:
        return [*out, "No engine was measured.", ""]
    return [*out, *_table(["target", *engines], _target_rows(report))]


# --- sections --------------------------------------------------------------------------------------------


def _data(report: Report) -> list[str]:
    out = ["## Data", ""]
    for engine, seeded in report.seeded.items():
        phases = {f"seeding: {k}": f"{v:,.1f} s" for k, v in seeded.phases.items()}
        rate = seeded.total / seeded.phases.get("generate + load", seeded.seconds)
        phases["seeding: total"] = f"{seeded.seconds:,.1f} s ({rate:,.0f} rows/s generated and loaded)"
        window = f"{seeded.start:%Y-%m-%d} … {seeded.end:%Y-%m-%d}"
        out += _kv({**report.rows.get(engine, {}), "history": window, **phases}, engine)
    return out


def _append_section(results: list[AppendResult]) -> list[str]:
    rows = [
        [
            r.engine,
            str(r.writers),
            f"{r.recorder_median:,.0f}",
            f"{r.raw_median:,.0f}",
            f"{r.recorder_median / r.raw_median:.2f}",
            " / ".join(f"{v:,.0f}" for v in r.recorder),
            " / ".join(f"{v:,.0f}" for v in r.raw),
        ]
        for r in results
    ]
    return [
        "## Append throughput",
        "",
        "One durable transaction per append (a list row + its chained entry), on the seeded database. "
        "*recorder* = `services.lists.create_list` in a fresh `UnitOfWork`; *raw* = the same rows, head "
        "lock and sha256 by hand through the bare driver. Writers are separate processes on separate "
        "accounts. Median of the runs, entries/s summed over writers; the individual runs follow.",
        "",
        *_table(
            ["engine", "writers", "recorder/s", "raw/s", "recorder ÷ raw", "recorder runs", "raw runs"],
            rows,
            "llrrrll",
        ),
    ]


def _query_row(r: QueryResult, postgres: bool) -> list[str]:
    api50, api95 = percentile(r.api_ms, 50), percentile(r.api_ms, 95)
    raw50, raw95 = percentile(r.raw_ms, 50), percentile(r.raw_ms, 95)
    cells = [
        r.name,
        _params(r.params),
        f"{r.matches:,}",
        f"{api50:.2f}",
        f"{_ok(api95 < P95_TARGET_MS)} {_ms(api95)}",
        _ms(raw50),
        _ms(raw95),
        f"{api50 / raw50:.1f}",
        str(len(r.api_ms)),
    ]
    if postgres:
        cells += [_ms(r.plan.custom_ms), _ms(r.plan.generic_ms)]
    return cells


def _query_section(run: QueryRun) -> list[str]:
    postgres = run.engine == "postgresql"
    header = ["query", "params", "matching", "API p50", "API p95", "raw p50", "raw p95", "API ÷ raw", "n"]
    if postgres:
        header += ["custom plan", "generic plan"]
    per_page = run.walk_seconds / run.walk_pages * 1000 if run.walk_pages else 0.0
    return [
        f"### {run.engine}",
        "",
        f"Milliseconds; page size {PAGE}; *n* timed requests per side after {WARMUP} warm-up ones. "
        "*matching* = entries of the account that satisfy the filter."
        + (
            " *custom/generic plan* = EXPLAIN ANALYZE execution time of each plan (see PLANS.md)."
            if postgres
            else ""
        ),
        "",
        *_table(header, [_query_row(r, postgres) for r in run.results], "llrrrrrrr" + "rr" * postgres),
        f"- Keyset walk: followed `next_cursor` {run.walk_pages} times in {run.walk_seconds:.1f} s "
        f"({per_page:.1f} ms a page, end to end).",
        f"- `GET /api/v1/activity/verify` re-checked {run.verified:,} entries in {run.verify_seconds:.1f} s "
        f"({run.verified / max(run.verify_seconds, 1e-9):,.0f} entries/s).",
        "",
    ]


def _export_section(results: list[ExportResult]) -> list[str]:
    rows = []
    for e in results:
        raw_peak = e.raw_peak_kb
        rows.append(
            [
                e.engine,
                e.name,
                _params(e.params),
                f"{max(s.rows for s in e.api):,}",
                f"{e.api_rate:,.0f}",
                f"{e.raw_rate:,.0f}",
                f"{e.api_rate / e.raw_rate:.0%}",
                f"{statistics.median(s.bytes for s in e.api) / 2**20:,.0f} / "
                f"{statistics.median(s.bytes for s in e.raw) / 2**20:,.0f}",
                f"{e.server_rss_before_kb / 1024:,.0f} → {e.api_peak_kb / 1024:,.0f}",
                "—" if raw_peak is None else f"{raw_peak / 1024:,.0f}",
                "yes" if e.header_ok else f"no: `{e.header[:60]}`",
            ]
        )
    tools = "; ".join(sorted({f"{e.engine}: {e.raw_tool}" for e in results}))
    return [
        "## CSV export",
        "",
        "`GET /api/v1/activity/export?format=csv` of the big account, streamed to a client that discards it, "
        f"beside the raw engine's own CSV export of the same rows ({tools}). Median rows/s of the runs; "
        "peak RSS is the maximum over the runs.",
        "",
        *_table(
            [
                "engine",
                "slice",
                "filter",
                "rows",
                "API rows/s",
                "raw rows/s",
                "API ÷ raw",
                "MiB API / raw",
                "server RSS MB: before → peak",
                "raw peak RSS MB",
                "contract header",
            ],
            rows,
            "lllrrrrrrrl",
        ),
    ]


def _load(report: Report) -> str:
    start, end = report.load_start, report.load_end
    peak = max(report.load) if report.load else 0.0
    return (
        f"{start[0]:.2f} / {start[1]:.2f} / {start[2]:.2f} at start, "
        f"{end[0]:.2f} / {end[1]:.2f} / {end[2]:.2f} at end (1 / 5 / 15 min); "
        f"highest 1-min sample {peak:.2f}; {machine()['nproc']} CPUs"
    )


def render(report: Report) -> str:
    took = (report.finished - report.started).total_seconds()
    argv = report.settings.get("argv", "")
    out = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`bench/run.py{'' if argv == '(defaults)' else ' ' + argv}`) on "
        f"{report.started:%Y-%m-%d %H:%M} UTC; the run took {took / 60:.1f} min. Overwritten by every run; "
        "the query plans are in [PLANS.md](PLANS.md). The full-size run is by hand: "
        "`.venv/bin/python bench/run.py --entries 10000000` (about 1.5 hours on this machine, most of it "
        "seeding and the slow API exports).",
        "",
        *_targets(report),
        *(f"- {engine}: skipped — {reason}" for engine, reason in report.skipped.items()),
        "## Machine, engines and settings",
        "",
        *_kv({**machine(), "load average": _load(report)}, "machine"),
    ]
    for engine, info in report.engines.items():
        out += _kv(info, engine)
    out += _kv(report.settings, "setting")
    out += ["Method notes:", "", *NOTES, ""]
    out += _data(report)
    if report.queries:
        out += ["## Query latency: HTTP API vs the same SQL on the bare driver", ""]
        for run in report.queries:
            out += _query_section(run)
    if report.exports:
        out += _export_section(report.exports)
    if report.appends:
        out += _append_section(report.appends)
    return "\n".join(out).rstrip() + "\n"


# The page statements select every column of the entry; the plans depend on the rest of the statement.
_ENTRY_COLUMNS = re.compile(r"SELECT (?:activity_entries\.\w+, )+activity_entries\.\w+ ?\n")
# Plan lines that say nothing about the access path (the buffers and planning time of each node).
_PLAN_NOISE = ("Buffers:", "Planning:", "Planning Time:", "I/O Timings:")


def short_sql(sql: str) -> str:
    return _ENTRY_COLUMNS.sub("SELECT <every column of the entry>\n", sql)


def plan_lines(plan: str) -> str:
    return "\n".join(line for line in plan.splitlines() if not line.strip().startswith(_PLAN_NOISE))


def _sql(result: QueryResult) -> str:
    return "\n\n".join(f"{short_sql(s.sql)}\n-- parameters: {s.params!r}" for s in result.statements)


def render_plans(report: Report) -> str:
    out = [
        "# Query plans",
        "",
        f"From the run of {report.started:%Y-%m-%d %H:%M} UTC (`bench/run.py`), on the data described in "
        "RESULTS.md. For every query: the SQL the application sends (captured at the driver; the list of "
        "the entry's columns shortened), then its plan (without buffer and planning lines). "
        "SQLite: `EXPLAIN QUERY PLAN`. PostgreSQL: `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)` of the "
        "custom plan (planned with the values), then of the generic plan "
        "(`SET plan_cache_mode = force_generic_plan`, `PREPARE`, `EXPLAIN … EXECUTE`) — "
        "the plan a statement prepared by psycopg can switch to.",
        "",
    ]
    for run in report.queries:
        out += [f"## {run.engine}", ""]
        for r in run.results:
            out += [f"### {r.name}", "", f"API parameters: {_params(r.params)}; matching: {r.matches:,}", ""]
            out += ["```sql", _sql(r), "```", ""]
            label = "custom plan" if r.plan.generic is not None else "plan"
            out += [f"{label}:", "", "```", plan_lines(r.plan.custom), "```", ""]
            if r.plan.generic is not None:
                out += ["generic plan:", "", "```", plan_lines(r.plan.generic), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def write(report: Report) -> list[Path]:
    RESULTS.write_text(render(report))
    PLANS.write_text(render_plans(report))
    return [RESULTS, PLANS]
