"""Load held: minutes of mixed reads, writes and exports against ``activitylog serve``, per engine.

For each engine: a fresh store, an account with one API key per client, a few seeded lists and contacts,
and the real server as a child process. Concurrent clients then run a fixed mix for ``--minutes``:

- reads: ``GET /api/v1/lists`` and a list's contacts, and ``GET /api/v1/activity`` with one of several
  filters, sometimes following ``next_cursor`` for more pages;
- writes: the crash test's mutations (create/update/delete lists, contacts, suppressions, domains);
- exports: ``GET /api/v1/activity/export`` (CSV or JSON Lines) of the client's own recent entries.

Each operation kind reports count, rate, p50/p99 latency and errors (a non-2xx answer or a connection
error). Throughput per minute shows whether the load held. Afterwards: every acknowledged write has its
one entry and the log replays to the tables (``crash.check_store``), ``activitylog verify`` passes, seq
has no gaps. ``--clients auto`` first tries a few client counts for ``--calibrate-seconds`` each and keeps
the smallest within 5% of the best throughput. Writes bench/SOAK.md; exits 1 on any error or violation.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from activitylog.db.base import connect

# isort: split
from crash import CrashClient, _home_lists, check_store
from harness import Key, ServerProcess, fresh_store, make_tenant, verify_chains
from server import status_kb

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "SOAK.md"
MIX = {"read lists": 10, "read contacts": 10, "read activity": 35, "write": 40, "export": 5}
KINDS = ["read lists", "read contacts", "read activity", "activity next page", "write", "export"]


@dataclass
class Sample:
    at: float  # seconds since the soak began
    kind: str
    ms: float
    error: str | None


class SoakClient(CrashClient):
    """A crash client that also reads and exports, and times everything; the server is never killed."""

    def __init__(
        self, phase: int, number: int, base_url: str, key: Key, home_list: str, began: float, until: float
    ) -> None:
        super().__init__(number, base_url, key.id, key.secret, home_list, threading.Event())
        self.label = f"p{phase}c{number}"
        self.up.set()
        self.began, self.until = began, until
        self.samples: list[Sample] = []
        self.errors: Counter[str] = Counter()

    def run(self) -> None:
        try:
            while time.monotonic() < self.until and not self.stop.is_set():
                kind = self.random.choices(list(MIX), weights=list(MIX.values()))[0]
                getattr(self, "_" + kind.replace(" ", "_"))()
        finally:
            self.http.close()

    def _timed(self, kind: str, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response | None, bool]:
        """The response (None on a connection error) and whether it was a success."""
        started = time.monotonic()
        error, response = None, None
        try:
            response = self.http.request(method, path, **kwargs)
            if not response.is_success:
                error = f"{kind}: HTTP {response.status_code} {response.text[:120]}"
        except httpx.TransportError as exc:
            error = f"{kind}: {type(exc).__name__} {exc}"
        self._sample(kind, started, error)
        return response, error is None

    def _sample(self, kind: str, started: float, error: str | None) -> None:
        finished = time.monotonic()
        self.samples.append(Sample(started - self.began, kind, (finished - started) * 1000, error))
        if error:
            self.errors[error] += 1

    def _read_lists(self) -> None:
        self._timed("read lists", "GET", "/api/v1/lists", params={"limit": 50})

    def _read_contacts(self) -> None:
        self._timed("read contacts", "GET", f"/api/v1/lists/{self.pools.home_list}/contacts")

    def _activity_filter(self) -> dict[str, Any]:
        recent = (datetime.now(UTC) - timedelta(seconds=60)).isoformat()
        choices: list[dict[str, Any]] = [
            {"action": "list.*"},
            {"actor": self.key_id},
            {"resource_type": "contact", "action": "update"},
            {"q": f"List {self.label}n"},
            {"since": recent},
            {"actor_type": "api_key", "action": "sending_domain.*", "since": recent},
            {"resource_id": self.pools.home_list},
        ]
        return {**self.random.choice(choices), "limit": self.random.choice((20, 50, 100))}

    def _read_activity(self) -> None:
        params = self._activity_filter()
        response, ok = self._timed("read activity", "GET", "/api/v1/activity", params=params)
        pages = self.random.choice((0, 0, 1, 3))
        while response is not None and ok and pages and response.json()["next_cursor"]:
            params = {**params, "cursor": response.json()["next_cursor"]}
            response, ok = self._timed("activity next page", "GET", "/api/v1/activity", params=params)
            pages -= 1

    def _write(self) -> None:
        token = f"{self.label}n{len(self.attempts)}"
        kind = self.random.choice(("list", "contact", "address", "domain"))
        method, path, body, attempt = getattr(self, f"_{kind}")(token)
        self.attempts.append(attempt)
        headers = {"X-Request-ID": attempt.request_id}
        response, ok = self._timed("write", method, path, json=body, headers=headers)
        if response is None or not ok:
            attempt.outcome = "lost" if response is None else "rejected"
            return
        attempt.outcome, attempt.status = "acked", response.status_code
        if attempt.resource_id is None:
            created = response.json()
            attempt.resource_id = str(created.get("id") or created.get("email"))
            self._pool(attempt.action).append(attempt.resource_id)

    def _export(self) -> None:
        since = (datetime.now(UTC) - timedelta(seconds=120)).isoformat()
        params = {"actor": self.key_id, "since": since, "format": self.random.choice(("csv", "jsonl"))}
        started = time.monotonic()
        error = None
        try:
            with self.http.stream("GET", "/api/v1/activity/export", params=params) as response:
                size = sum(len(chunk) for chunk in response.iter_bytes())
                if not response.is_success or size == 0:
                    error = f"export: HTTP {response.status_code}, {size} bytes"
        except httpx.TransportError as exc:
            error = f"export: {type(exc).__name__} {exc}"
        self._sample("export", started, error)


def seed_contacts(base_url: str, key: Key, homes: list[str], per_list: int = 200) -> None:
    """Each home list gets contacts through the import endpoint, so reads return full pages."""
    headers = {"Authorization": f"Bearer {key.secret}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        for number, home in enumerate(homes):
            rows = [
                {"email": f"seed{number}-{i}@soak.example", "first_name": f"Seed {i}"}
                for i in range(per_list)
            ]
            http.post(f"/api/v1/lists/{home}/contacts/import", json=rows).raise_for_status()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@dataclass
class Phase:
    clients: int
    seconds: float
    samples: list[Sample]
    errors: Counter[str]
    workers: list[SoakClient]

    @property
    def rate(self) -> float:
        return len(self.samples) / self.seconds


def run_phase(
    number: int, server: ServerProcess, keys: list[Key], homes: list[str], clients: int, seconds: float
) -> Phase:
    began = time.monotonic()
    workers = [
        SoakClient(number, n, server.url, keys[n], homes[n], began, began + seconds) for n in range(clients)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - began
    samples = [sample for worker in workers for sample in worker.samples]
    errors: Counter[str] = Counter()
    for worker in workers:
        errors.update(worker.errors)
    return Phase(clients, elapsed, samples, errors, workers)


@dataclass
class EngineSoak:
    engine: str
    phase: Phase
    calibration: dict[int, float] = field(default_factory=dict)
    rss_kb: tuple[int, int] = (0, 0)
    load: tuple[float, float] = (0.0, 0.0)
    entries: int = 0
    verify_ok: bool = False
    verify_output: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        found = [f"{count} x {error}" for error, count in self.phase.errors.most_common()]
        found += self.problems
        if not self.verify_ok:
            found.append(f"activitylog verify failed: {self.verify_output}")
        return found


def soak_engine(engine: str, args: argparse.Namespace, log: Any = print) -> EngineSoak:
    counts = [int(c) for c in args.calibrate.split(",")] if args.clients == "auto" else [int(args.clients)]
    most = max(counts)
    with tempfile.TemporaryDirectory(prefix=f"activitylog-soak-{engine}-") as tmp:
        workdir = Path(tmp)
        with fresh_store(engine, args.pg_url, workdir) as store:
            db = connect(store.url)
            try:
                tenant = make_tenant(db, most)
                homes = _home_lists(db, tenant, most)
            finally:
                db.dispose()
            server = ServerProcess(store, workdir)
            try:
                server.start()
                seed_contacts(server.url, tenant.keys[0], homes)
                calibration: dict[int, float] = {}
                phases: list[Phase] = []
                if len(counts) > 1:
                    for count in counts:
                        phase = run_phase(
                            len(phases), server, tenant.keys, homes, count, args.calibrate_seconds
                        )
                        phases.append(phase)
                        calibration[count] = phase.rate
                        log(f"[{engine}] calibrate {count} clients: {phase.rate:.1f} ops/s")
                    best = max(calibration.values())
                    clients = min(c for c, rate in calibration.items() if rate >= 0.95 * best)
                else:
                    clients = counts[0]
                log(f"[{engine}] soak: {clients} clients for {args.minutes:g} min")
                load_start, rss_start = os.getloadavg()[0], status_kb(server.pid or 0, "VmRSS") or 0
                phase = run_phase(len(phases), server, tenant.keys, homes, clients, args.minutes * 60)
                phases.append(phase)
                rss_end = status_kb(server.pid or 0, "VmRSS") or 0
                result = EngineSoak(engine, phase, calibration, (rss_start, rss_end))
                result.load = (load_start, os.getloadavg()[0])
            finally:
                server.stop()
            db = connect(store.url)
            try:
                attempts = [a for done in phases for worker in done.workers for a in worker.attempts]
                check = check_store(db, tenant.account_id, attempts)
                result.problems += check.violations
            finally:
                db.dispose()
            chains = verify_chains(store, workdir)
            result.entries, result.verify_ok, result.verify_output = chains.entries, chains.ok, chains.output
            result.problems += [f"seq: {p}" for p in chains.seq_problems]
    return result


def kind_rows(phase: Phase) -> list[list[str]]:
    by_kind: dict[str, list[Sample]] = defaultdict(list)
    for sample in phase.samples:
        by_kind[sample.kind].append(sample)
    rows = []
    for kind in [*KINDS, "all"]:
        samples = phase.samples if kind == "all" else by_kind.get(kind, [])
        ms = [s.ms for s in samples]
        errors = sum(1 for s in samples if s.error)
        rows.append(
            [
                kind,
                f"{len(samples):,}",
                f"{len(samples) / phase.seconds:.1f}",
                f"{percentile(ms, 0.5):.1f}",
                f"{percentile(ms, 0.99):.1f}",
                f"{max(ms, default=0):.0f}",
                str(errors),
            ]
        )
    return rows


def minute_rows(phase: Phase) -> list[str]:
    """Operations per second and p99 for each minute: a load that holds shows flat lines."""
    minutes: dict[int, list[float]] = defaultdict(list)
    for sample in phase.samples:
        minutes[int(sample.at // 60)].append(sample.ms)
    out = []
    for minute in sorted(minutes):
        span = min(60.0, phase.seconds - minute * 60)
        if span >= 1:
            rate, p99 = len(minutes[minute]) / span, percentile(minutes[minute], 0.99)
            out.append(f"{minute + 1}: {rate:.0f}/s, p99 {p99:.0f} ms")
    return out


def report(result: EngineSoak) -> list[str]:
    phase = result.phase
    header = "| operation | count | per second | p50 ms | p99 ms | max ms | errors |"
    lines = [
        f"## {result.engine}",
        "",
        f"{phase.clients} concurrent clients for {phase.seconds / 60:.1f} min; load average"
        f" {result.load[0]:.2f} at the start, {result.load[1]:.2f} at the end.",
    ]
    if result.calibration:
        tried = ", ".join(f"{c} → {rate:.0f} ops/s" for c, rate in result.calibration.items())
        lines.append(f"Client count chosen by calibration (the smallest within 5% of the best): {tried}.")
    lines += ["", header, "|---|---:|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in kind_rows(phase)]
    lines += [
        "",
        "Per minute: " + "; ".join(minute_rows(phase)) + ".",
        "",
        f"- server RSS: {result.rss_kb[0] / 1024:.0f} MiB at the start of the soak,"
        f" {result.rss_kb[1] / 1024:.0f} MiB at the end",
        f"- log entries at the end: {result.entries:,}; `activitylog verify`:"
        f" {'ok' if result.verify_ok else 'FAILED'}",
        f"- writes checked against the log (one entry each, replay = tables), seq gaps: "
        f"{'none' if not result.problems else len(result.problems)}",
        "",
    ]
    if result.failures:
        lines += ["Errors and violations:", "", *[f"- {f}" for f in result.failures[:40]], ""]
    return lines


def write_markdown(results: list[EngineSoak], argv: list[str], path: Path) -> None:
    lines = [
        "# Load held",
        "",
        f"`python bench/soak.py {' '.join(argv)}`".replace(" `", "`"),
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, shared with other work (see",
        "the load averages). Client and server run on the same machine; the server is one"
        " `activitylog serve` process.",
        "",
        "Mix per client: " + ", ".join(f"{kind} {weight}%" for kind, weight in MIX.items()) + "; an activity",
        "read follows `next_cursor` for 1 or 3 more pages half the time; an export is the client's own",
        "entries of the last two minutes. Latency is the client's wall time for the whole response. No",
        "non-2xx answer is expected in this mix (names are unique, deletes only target what exists), so",
        "every one counts as an error, as does every connection error.",
        "",
    ]
    for result in results:
        lines += report(result)
    path.write_text("\n".join(lines))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10, help="soak length per engine (10)")
    parser.add_argument("--clients", default="auto", help="concurrent clients, or 'auto' to calibrate (auto)")
    parser.add_argument("--calibrate", default="2,4,8,16", help="client counts to try for 'auto'")
    parser.add_argument("--calibrate-seconds", type=float, default=20, help="length of each try (20)")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results file (bench/SOAK.md)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    results = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        result = soak_engine(engine, args)
        results.append(result)
        print("\n".join(report(result)))
    write_markdown(results, argv, args.output)
    print(f"wrote {args.output}")
    return 1 if any(result.failures for result in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
