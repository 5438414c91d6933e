"""bench/RESULTS.md: what was measured, on what machine, and the tables — written fresh by every run."""

from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path

# isort: split
# Sibling modules of bench/ (run.py runs as a script, so they import as top-level modules).
from appends import AppendResult
from queries import WARMUP, QueryRun

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PACKAGES = ("activitylog", "sqlalchemy", "fastapi", "starlette", "uvicorn", "psycopg", "httpx")


NOTES = (
    "Method notes:",
    "",
    "- Both sides of every ratio use the same database, schema and indexes; recorder/raw rounds and "
    "API/raw requests alternate, so load from other processes on the machine weighs on both alike. A load "
    "average well above the CPU count means absolute figures are pessimistic; the ratios hold up better.",
    "- Seeded rows are written in bulk but are exactly what the recorder writes (same chain function, "
    "`ip_key`, summaries); every chain is re-verified through `GET /api/v1/activity/verify` before timing.",
    "- PostgreSQL is `VACUUM ANALYZE`d after seeding (the state autovacuum reaches soon after); SQLite is "
    "not `ANALYZE`d, because the application never does it.",
    "- The raw PostgreSQL reads are planned with their real values on every execution (no server-side "
    "prepare), matching the EXPLAIN shown below. The application's psycopg connections prepare after 5 runs "
    "and PostgreSQL may then switch to a generic plan, so a value-sensitive query can differ by plan.",
    "- The API key's `last_used_at` is written at most once a minute, so a rare request includes a write.",
)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: with 50 samples, p95 is the third-slowest, a value that really occurred."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


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


@dataclass
class Report:
    started: datetime
    finished: datetime
    settings: dict[str, str]
    engines: dict[str, dict[str, str]] = field(default_factory=dict)
    seeding: dict[str, str] = field(default_factory=dict)
    appends: list[AppendResult] = field(default_factory=list)
    queries: list[QueryRun] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)  # 1-minute load average, sampled at each step


def _kv_table(rows: dict[str, str], left: str = "", right: str = "") -> list[str]:
    return [f"| {left} | {right} |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items())]


def _append_section(results: list[AppendResult]) -> list[str]:
    out = [
        "## Append throughput",
        "",
        "One durable transaction per append (a list row + its chained entry). *recorder* = "
        "`services.lists.create_list` in a fresh `UnitOfWork`; *raw* = the same rows, head lock and sha256 "
        "by hand through the bare driver. Writers are separate processes on separate accounts. "
        "Recorder and raw rounds alternate. Median of the runs, entries/s summed over writers; the "
        "individual runs follow.",
        "",
        "| engine | writers | recorder entries/s | raw entries/s | recorder ÷ raw | recorder runs "
        "| raw runs |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        out.append(
            f"| {r.engine} | {r.writers} | {r.recorder_median:,.0f} | {r.raw_median:,.0f} "
            f"| {r.recorder_median / r.raw_median:.2f} | {_runs(r.recorder)} | {_runs(r.raw)} |"
        )
    return [*out, ""]


def _runs(values: list[float]) -> str:
    return " / ".join(f"{v:,.0f}" for v in values)


def _params(params: dict[str, str]) -> str:
    shown = [f"{k}={v[:12] + '…' if len(v) > 16 else v}" for k, v in params.items()]
    return "`" + "&".join(shown) + "`" if shown else "—"


def _query_section(run: QueryRun) -> list[str]:
    n = len(run.results[0].api_ms) if run.results else 0
    out = [
        f"### {run.engine}",
        "",
        f"{n} timed requests per row after {WARMUP} warm-up ones, alternating API and raw; page size 50. "
        "*matching* = rows of the account that satisfy the filter. *raw* = the same WHERE/ORDER BY/LIMIT 51 "
        "through the bare driver.",
        "",
        "| query | params | matching | API p50 ms | API p95 ms | raw p50 ms | raw p95 ms | API ÷ raw (p50) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in run.results:
        api50, api95 = percentile(r.api_ms, 50), percentile(r.api_ms, 95)
        raw50, raw95 = percentile(r.raw_ms, 50), percentile(r.raw_ms, 95)
        out.append(
            f"| {r.name} | {_params(r.params)} | {r.matches:,} | {api50:.2f} | {api95:.2f} "
            f"| {raw50:.2f} | {raw95:.2f} | {api50 / raw50:.1f} |"
        )
    per_page = run.walk_seconds / run.walk_pages * 1000 if run.walk_pages else 0.0
    out += [
        "",
        f"- Keyset walk: followed `next_cursor` {run.walk_pages} times (limit=50) in "
        f"{run.walk_seconds:.1f} s ({per_page:.1f} ms a page, end to end).",
        f"- `GET /api/v1/activity/verify` re-checked {run.verified:,} entries of the account in "
        f"{run.verify_seconds:.1f} s ({run.verified / run.verify_seconds:,.0f} entries/s).",
        "- Rows: " + ", ".join(f"{k} {v:,}" for k, v in run.row_counts.items()) + ".",
        "",
    ]
    return out


def _plans(run: QueryRun) -> list[str]:
    verb = "EXPLAIN QUERY PLAN" if run.engine == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)"
    out = ["<details>", f"<summary>{run.engine}: {verb} of the hand-written SQL</summary>", ""]
    for r in run.results:
        out += [f"**{r.name}**", "", "```", r.plan, "```", ""]
    return [*out, "</details>", ""]


def _headline(report: Report) -> list[str]:
    out = ["## Headline", ""]
    for engine in report.engines:
        single = next((r for r in report.appends if r.engine == engine and r.writers == 1), None)
        if single:
            share = single.recorder_median / single.raw_median
            out.append(
                f"- {engine}: one writer appends {single.recorder_median:,.0f} entries/s through the "
                f"recorder, {single.raw_median:,.0f}/s raw ({share:.0%} of raw)."
            )
        run = next((q for q in report.queries if q.engine == engine), None)
        if run and run.results:
            worst = max(run.results, key=lambda r: percentile(r.api_ms, 95))
            ratio = statistics.median(
                percentile(r.api_ms, 50) / percentile(r.raw_ms, 50) for r in run.results
            )
            out.append(
                f"- {engine}: worst API p95 is {percentile(worst.api_ms, 95):.1f} ms ({worst.name}); "
                f"median API ÷ raw across queries {ratio:.1f} times."
            )
    for engine, reason in report.skipped.items():
        out.append(f"- {engine}: skipped — {reason}")
    return [*out, ""]


def _args(argv: str) -> str:
    return "" if argv in ("", "(defaults)") else f" {argv}"


def render(report: Report) -> str:
    took = (report.finished - report.started).total_seconds()
    out = [
        "# Benchmark results",
        "",
        f"Generated by `make bench` (`bench/run.py{_args(report.settings.get('argv', ''))}`) on "
        f"{report.started:%Y-%m-%d %H:%M} UTC; the run took {took / 60:.1f} min. Overwritten by every run.",
        "",
        "## Machine and engines",
        "",
        *_kv_table(machine(), "machine", ""),
        "",
    ]
    for engine, info in report.engines.items():
        out += [*_kv_table(info, engine, ""), ""]
    settings = {**report.settings, **report.seeding}
    if report.load:
        first, peak, last = report.load[0], max(report.load), report.load[-1]
        settings["load average (1 min): start / max / end"] = (
            f"{first:.2f} / {peak:.2f} / {last:.2f} on {machine()['nproc']} CPUs"
        )
    out += ["## Settings", "", *_kv_table(settings, "setting", "value"), "", *NOTES, ""]
    out += _headline(report)
    if report.appends:
        out += _append_section(report.appends)
    if report.queries:
        out += ["## Query latency through the HTTP API", ""]
        for run in report.queries:
            out += _query_section(run)
        out += ["## Query plans", ""]
        for run in report.queries:
            out += _plans(run)
    return "\n".join(out).rstrip() + "\n"


def write(report: Report) -> Path:
    RESULTS.write_text(render(report))
    return RESULTS
