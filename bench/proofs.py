"""``make bench-proofs``: what the Merkle tree costs and how fast its proofs are served, on both engines.

For each engine: a throw-away database built by the real migrations, one account of ``--entries`` entries
(plus a few small tenants) seeded with its tree (``seeding``: the product's own ``log.tree.append``), then,
with the server started as ``make run`` starts it (``activitylog serve``, workers on) in its own process:

1. checks: the seeded account passes ``verify_account``; inclusion and consistency proofs from the API check
   with the auditor's code (``verify_export.inclusion_root`` / ``consistency_holds``) against checkpoints
   opened with the account's verifier key; the proof file of an export checks offline with
   ``tools/verify_export.py --proof``;
2. proof endpoints, one request at a time, interleaved: the checkpoint, an inclusion proof of a random seq
   and a consistency proof from a random size, both in the tree of the head, and the verifier key (p95 target
   < 20 ms); every inclusion proof served is checked against the head's root;
3. export with proofs: ``GET /export/proof`` vs the CSV export ``GET /export`` of the same slice (a window of
   ``--window-days``) as of the same seq, alternating, rows/s;
4. full verify: ``verify_account`` on the big account vs a plain stdlib loop that reads the same entries with
   the raw driver and re-hashes each per the contract (target ≥ 50%), alternating;
5. appends through the real recorder (``services.lists.create_list`` in a ``UnitOfWork``, one durable
   transaction each) with the tree and without it: the tree step is patched out in this process only
   (``log.tree.append`` returns the frontier unchanged and no row), on an account of its own; rounds
   alternate (target: the tree costs ≤ 15%).

Results: bench/RESULTS-proofs.md (medians and p95 of one run; ratios within that run).

    .venv/bin/python bench/proofs.py [--entries 2000000] [--engines sqlite,postgresql] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import psycopg

from activitylog.config import Settings
from activitylog.log import tree
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.signing import load_signer
from activitylog.log.verify import verify_account
from activitylog.log.verify_export import (
    consistency_holds,
    inclusion_root,
    leaf_hash,
    open_checkpoint,
    parse_verifier_key,
)

# isort: split
# Sibling modules of bench/ (this runs as a script, so they import as top-level modules).
from appends import RecorderWriter, _make_accounts
from seeding import Seeded, seed
from server import serve
from stores import Store, describe, detectors_at_head, postgres_store, row_counts, sqlite_store

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
RESULTS = Path(__file__).resolve().parent / "RESULTS-proofs.md"
ROOT = Path(__file__).resolve().parent.parent
ACTIVITYLOG = Path(sys.executable).with_name("activitylog")
TREE = "/api/v1/activity/tree"
P95_MS = 20.0
APPEND_COST = 0.15
VERIFY_SHARE = 0.5
BIG_SHARE = 0.9  # the account under test holds 90% of what is seeded: seeding time goes to it
APPEND_PATHS = ("with tree", "without tree")
CHAINED = (
    "account_id", "seq", "occurred_at", "actor_type", "actor_id", "actor_name", "on_behalf_of", "ip",
    "user_agent", "action", "resource_type", "resource_id", "resource_name", "changes", "request_id",
)  # fmt: skip


# --- what was measured ------------------------------------------------------------------------------------


def p95(samples: list[float]) -> float:
    """Nearest rank: with 200 samples, the 10th slowest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class Rates:
    """Rows (or appends) over seconds, one pair per run."""

    rows: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, rows: int, seconds: float) -> None:
        self.rows.append(rows)
        self.seconds.append(seconds)

    @property
    def each(self) -> list[float]:
        return [r / s for r, s in zip(self.rows, self.seconds, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.each)


@dataclass
class EngineRun:
    engine: str
    info: dict[str, str]
    rows: dict[str, str] = field(default_factory=dict)
    seeded: Seeded | None = None
    head: int = 0
    checks: list[str] = field(default_factory=list)
    endpoints: dict[str, list[float]] = field(default_factory=dict)  # ms
    export_rows: int = 0
    export_window: str = ""
    exports: dict[str, Rates] = field(default_factory=lambda: {"csv": Rates(), "proof": Rates()})
    verify: dict[str, Rates] = field(default_factory=lambda: {"verify_account": Rates(), "stdlib": Rates()})
    appends: dict[str, Rates] = field(default_factory=lambda: {p: Rates() for p in APPEND_PATHS})
    phases: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)


def app_env(store: Store, workdir: Path) -> dict[str, str]:
    """The key directory (signing key and the signer's memory) and data key in the run's own directory."""
    return {
        "ACTIVITYLOG_DATABASE_URL": store.url,
        "ACTIVITYLOG_KEY_DIR": str(workdir / "keys"),
        "ACTIVITYLOG_DATA_KEY_FILE": str(workdir / "data.key"),
    }


def local_signer(store: Store, workdir: Path) -> CheckpointSigner:
    """The same signer (key and memory) the server uses, for the anchor ``verify`` checks against."""
    env = app_env(store, workdir)
    settings = Settings(
        database_url=env["ACTIVITYLOG_DATABASE_URL"],
        key_dir=env["ACTIVITYLOG_KEY_DIR"],
        data_key_file=env["ACTIVITYLOG_DATA_KEY_FILE"],
    )
    return CheckpointSigner(settings, load_signer(settings))


# --- 1. checks --------------------------------------------------------------------------------------------


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


def check_proofs(
    client: httpx.Client, account_id: str, store: Store, rng: random.Random, n: int
) -> list[str]:
    """Proofs from the API, checked with the auditor's code against checkpoints it opened itself."""
    key = parse_verifier_key(client.get(f"/api/v1/accounts/{account_id}/verifier-key").json()["verifier_key"])
    head = open_checkpoint(_ok(client.get(f"{TREE}/checkpoint")).text, key)
    conn = store.raw_connect()
    try:
        for _ in range(n):
            seq = rng.randint(1, head.size)
            proof = _ok(client.get(f"{TREE}/inclusion", params={"seq": seq, "tree_size": head.size})).json()
            (entry_hash,) = conn.execute(
                store.sql("SELECT hash FROM activity_entries WHERE account_id = ? AND seq = ?"),
                (account_id, seq),
            ).fetchone()
            leaf = _b64(proof["leaf_hash"])
            if leaf != leaf_hash(entry_hash):
                raise AssertionError(f"inclusion of seq {seq}: the leaf hash is not the entry's")
            root = inclusion_root(seq - 1, head.size, leaf, [_b64(h) for h in proof["hashes"]])
            if root != head.root:
                raise AssertionError(
                    f"inclusion of seq {seq} in {head.size} does not lead to the signed root"
                )
            old = rng.randint(1, head.size - 1)
            old_cp = open_checkpoint(
                _ok(client.get(f"{TREE}/checkpoint", params={"tree_size": old})).text, key
            )
            proof = _ok(
                client.get(f"{TREE}/consistency", params={"old_size": old, "tree_size": head.size})
            ).json()
            if old_cp.size != old or not consistency_holds(
                old, head.size, old_cp.root, head.root, [_b64(h) for h in proof["hashes"]]
            ):
                raise AssertionError(f"consistency {old} -> {head.size} does not hold")
    finally:
        conn.close()
    return [
        f"{n} inclusion proofs (random seq, tree of {head.size:,}) lead to the signed root "
        f"(`verify_export.inclusion_root`), each leaf the entry's own hash",
        f"{n} consistency proofs (random old size → {head.size:,}) hold between two signed checkpoints "
        f"(`verify_export.consistency_holds`)",
    ]


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise AssertionError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response


# --- 2. proof endpoints -----------------------------------------------------------------------------------


def time_endpoints(
    client: httpx.Client, account_id: str, head: int, requests: int, rng: random.Random
) -> dict[str, list[float]]:
    """Each endpoint ``requests`` times after a warm-up, interleaved so load weighs on all alike; every
    inclusion proof is checked against the head's root (outside the timed part)."""
    key = parse_verifier_key(client.get(f"/api/v1/accounts/{account_id}/verifier-key").json()["verifier_key"])
    root = open_checkpoint(_ok(client.get(f"{TREE}/checkpoint")).text, key).root
    kinds: dict[str, Callable[[], tuple[str, dict[str, Any]]]] = {
        "checkpoint": lambda: (f"{TREE}/checkpoint", {}),
        "inclusion (random seq, head)": lambda: (
            f"{TREE}/inclusion",
            {"seq": rng.randint(1, head), "tree_size": head},
        ),
        "consistency (random old size, head)": lambda: (
            f"{TREE}/consistency",
            {"old_size": rng.randint(1, head - 1), "tree_size": head},
        ),
        "verifier-key": lambda: (f"/api/v1/accounts/{account_id}/verifier-key", {}),
    }
    samples: dict[str, list[float]] = {name: [] for name in kinds}
    names = list(kinds)
    for i in range(requests + 5):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            path, params = kinds[name]()
            began = time.perf_counter()
            response = client.get(path, params=params)
            _ = response.content
            elapsed = (time.perf_counter() - began) * 1000
            _ok(response)
            if i >= 5:
                samples[name].append(elapsed)
            if name.startswith("inclusion"):
                body = response.json()
                got = inclusion_root(
                    body["leaf_index"], head, _b64(body["leaf_hash"]), [_b64(h) for h in body["hashes"]]
                )
                if got != root:
                    raise AssertionError(f"inclusion proof {params} does not lead to the head's root")
    return samples


# --- 3. export with proofs vs CSV -------------------------------------------------------------------------


def _stream(
    client: httpx.Client, path: str, params: dict[str, Any], out: Path | None
) -> tuple[int, float, Any]:
    began = time.perf_counter()
    lines = 0
    with client.stream("GET", path, params=params) as response:
        if response.status_code != 200:
            response.read()
            _ok(response)
        sink = out.open("wb") if out else None
        try:
            for chunk in response.iter_raw(1 << 16):
                lines += chunk.count(b"\n")
                if sink:
                    sink.write(chunk)
        finally:
            if sink:
                sink.close()
        headers = response.headers
    return lines - 1, time.perf_counter() - began, headers  # less the header / the checkpoint line


def run_exports(
    client: httpx.Client, run: EngineRun, params: dict[str, str], runs: int, workdir: Path, vkey: str
) -> None:
    """CSV then proofs as of the CSV's seq, alternating which goes first; the first pair checked offline."""
    for i in range(runs):
        out_csv = workdir / "export.csv" if i == 0 else None
        out_proof = workdir / "export.proof.jsonl" if i == 0 else None
        if i % 2 == 0:
            rows, seconds, headers = _stream(
                client, "/api/v1/activity/export", {**params, "format": "csv"}, out_csv
            )
            as_of = int(headers["X-Activity-As-Of-Seq"])
            run.exports["csv"].add(rows, seconds)
            p_rows, p_seconds, _ = _stream(
                client, "/api/v1/activity/export/proof", {**params, "tree_size": as_of}, out_proof
            )
            run.exports["proof"].add(p_rows, p_seconds)
        else:
            head = int(_ok(client.get(f"{TREE}/checkpoint")).text.split("\n")[1])
            p_rows, p_seconds, _ = _stream(
                client, "/api/v1/activity/export/proof", {**params, "tree_size": head}, out_proof
            )
            run.exports["proof"].add(p_rows, p_seconds)
            rows, seconds, _ = _stream(
                client, "/api/v1/activity/export", {**params, "format": "csv"}, out_csv
            )
            run.exports["csv"].add(rows, seconds)
        if rows != p_rows:
            raise AssertionError(f"the CSV has {rows} rows, the proof file {p_rows}")
        run.export_rows = rows
        if i == 0:
            (workdir / "verifier.key").write_text(vkey + "\n")
            began = time.perf_counter()
            tool = [sys.executable, str(ROOT / "tools" / "verify_export.py"), str(out_csv)]
            done = subprocess.run(
                [*tool, "--proof", str(out_proof), "--verifier-key", str(workdir / "verifier.key")],
                capture_output=True,
                text=True,
                check=False,
            )
            said = (done.stdout + done.stderr).strip().splitlines()
            if done.returncode != 0:
                raise AssertionError(f"tools/verify_export.py --proof exit {done.returncode}: {said}")
            run.checks.append(
                f"the export's proof file ({rows:,} rows) checks offline: `tools/verify_export.py F --proof P"
                f" --verifier-key K` exit 0 in {time.perf_counter() - began:.1f} s"
                f" ({said[-1] if said else ''})"
            )
        print(
            f"    export {i + 1}/{runs}: CSV {run.exports['csv'].each[-1]:,.0f} rows/s,"
            f" proofs {run.exports['proof'].each[-1]:,.0f} rows/s ({rows:,} rows)",
            flush=True,
        )


# --- 4. full verify vs a stdlib loop ----------------------------------------------------------------------


def app_verify(store: Store, account_id: str, signer: CheckpointSigner) -> tuple[int, float]:
    db = store.app_db()
    try:
        anchor = signer.last_signed(account_id)
        began = time.perf_counter()
        with db.for_account(account_id).reader() as session:
            verdict = verify_account(session, account_id, anchor)
        seconds = time.perf_counter() - began
    finally:
        db.dispose()
    if not verdict.ok:
        raise AssertionError(f"verify_account: broken at {verdict.first_bad_seq}: {verdict.reason}")
    return verdict.checked, seconds


def stdlib_verify(store: Store, account_id: str) -> tuple[int, float]:
    """The least a full check must do: read each entry with the bare driver, rebuild its canonical JSON
    with ``json``, ``sha256`` it with the previous hash, compare, link. No tree, no derived columns."""
    conn = store.raw_connect()
    columns = ", ".join((*CHAINED, "prev_hash", "hash"))
    sql = store.sql(f"SELECT {columns} FROM activity_entries WHERE account_id = ? ORDER BY seq")
    at = CHAINED.index("occurred_at")
    ch = CHAINED.index("changes")
    dumps, loads, sha256 = json.dumps, json.loads, hashlib.sha256
    try:
        began = time.perf_counter()
        if store.is_sqlite:
            cur = conn.execute(sql, (account_id,))
        else:
            conn.execute("SET TimeZone = 'UTC'")
            cur = conn.cursor(name="stdlib_verify")
            cur.itersize = 5000
            cur.execute(sql, (account_id,))
        prev, expected = "0" * 64, 1
        for row in cur:
            obj = dict(zip(CHAINED, row[:-2], strict=True))
            when = row[at]
            obj["occurred_at"] = (
                when.replace(" ", "T") + "Z"
                if isinstance(when, str)
                else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            )
            obj["changes"] = loads(row[ch])
            canonical = dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            digest = sha256(f"{prev}\n{canonical}".encode()).hexdigest()
            if row[-2] != prev or digest != row[-1] or obj["seq"] != expected:
                raise AssertionError(f"stdlib loop: seq {obj['seq']} does not hold")
            prev, expected = digest, expected + 1
        seconds = time.perf_counter() - began
    finally:
        conn.close()
    return expected - 1, seconds


def run_verify(store: Store, account_id: str, signer: CheckpointSigner, runs: int, run: EngineRun) -> None:
    for i in range(runs):
        order = ("verify_account", "stdlib") if i % 2 == 0 else ("stdlib", "verify_account")
        for name in order:
            rows, seconds = (
                app_verify(store, account_id, signer)
                if name == "verify_account"
                else stdlib_verify(store, account_id)
            )
            run.verify[name].add(rows, seconds)
        print(
            f"    verify {i + 1}/{runs}: verify_account {run.verify['verify_account'].each[-1]:,.0f} rows/s,"
            f" stdlib loop {run.verify['stdlib'].each[-1]:,.0f} rows/s",
            flush=True,
        )


# --- 5. appends with and without the tree -----------------------------------------------------------------


def _no_tree(frontier: list[bytes], size: int, entry_hash_hex: str) -> tuple[list[bytes], bytes]:
    return frontier, b""


def without_tree() -> AbstractContextManager[Any]:
    """The recorder with its tree step gone, in this process only, for the length of one round."""
    return mock.patch.object(tree, "append", _no_tree)


def run_appends(store: Store, runs: int, seconds: float, run: EngineRun, signer: CheckpointSigner) -> None:
    owned = {path: _make_accounts(store, 1, path.replace(" ", "-"))[0] for path in APPEND_PATHS}
    writers = {path: RecorderWriter(store, owned[path]) for path in APPEND_PATHS}
    done = dict.fromkeys(APPEND_PATHS, 0)
    try:
        for path in APPEND_PATHS:  # warm up: connect, compile statements
            with without_tree() if path == "without tree" else nullcontext():
                for _ in range(20):
                    writers[path].append(done[path])
                    done[path] += 1
        for i in range(runs):
            for path in APPEND_PATHS if i % 2 == 0 else APPEND_PATHS[::-1]:
                with without_tree() if path == "without tree" else nullcontext():
                    count, began = 0, time.perf_counter()
                    deadline = began + seconds
                    while time.perf_counter() < deadline:
                        writers[path].append(done[path])
                        done[path] += 1
                        count += 1
                    run.appends[path].add(count, time.perf_counter() - began)
            print(
                f"    appends {i + 1}/{runs}: with tree {run.appends['with tree'].each[-1]:,.0f}/s,"
                f" without {run.appends['without tree'].each[-1]:,.0f}/s",
                flush=True,
            )
    finally:
        for writer in writers.values():
            writer.close()
    app_verify(store, owned["with tree"], signer)  # the timed appends built a tree that verifies
    run.checks.append(f"the {done['with tree']:,} timed appends with the tree verify (`verify_account`)")


# --- the run ----------------------------------------------------------------------------------------------


def bench_engine(store: Store, args: argparse.Namespace) -> EngineRun:
    run = EngineRun(store.engine, describe(store))
    began = time.perf_counter()

    def log(message: str) -> None:
        run.load.append(os.getloadavg()[0])
        print(f"[{store.engine} +{time.perf_counter() - began:6.1f}s] {message}", flush=True)

    rng = random.Random(20261201)
    workdir = Path(tempfile.mkdtemp(prefix=f"activitylog-proofs-{store.engine}-"))
    try:
        total = math.ceil(args.entries / BIG_SHARE)
        log(f"seeding {total:,} entries, {args.entries:,} in the account under test")
        phase = time.perf_counter()
        run.seeded = seeded = seed(store, entries=total, accounts_total=args.accounts, big_share=BIG_SHARE)
        run.phases["seed (entries and tree)"] = time.perf_counter() - phase
        run.rows = row_counts(store, seeded.account_id)
        signer = local_signer(store, workdir)
        account = seeded.account_id
        log("full verify vs the stdlib loop (each verify_account run must pass)")
        phase = time.perf_counter()
        run_verify(store, account, signer, args.verify_runs, run)
        run.phases["verify"] = time.perf_counter() - phase
        checked = run.verify["verify_account"].rows[0]
        run.checks.append(f"the seeded account ({checked:,} entries) passes `verify_account`, every run")
        headers = {"Authorization": f"Bearer {seeded.api_key}", "User-Agent": "activitylog-bench"}
        detectors_at_head(store)  # the served worker follows new entries only, as it would have all along
        with (
            serve(store.url, {**os.environ, **app_env(store, workdir)}, workdir=workdir) as server,
            httpx.Client(base_url=server.url, headers=headers, timeout=3600) as client,
        ):
            log("checking proofs with the auditor's code")
            run.checks += check_proofs(client, account, store, rng, args.checks)
            run.head = head = open_checkpoint(
                _ok(client.get(f"{TREE}/checkpoint")).text,
                parse_verifier_key(
                    client.get(f"/api/v1/accounts/{account}/verifier-key").json()["verifier_key"]
                ),
            ).size
            log(f"proof endpoints, tree of {head:,}")
            phase = time.perf_counter()
            run.endpoints = time_endpoints(client, account, head, args.requests, rng)
            run.phases["proof endpoints"] = time.perf_counter() - phase
            for name, samples in run.endpoints.items():
                print(f"    {name}: median {statistics.median(samples):.2f} ms, p95 {p95(samples):.2f} ms")
            until = seeded.end
            since = until - timedelta(days=args.window_days)
            params = {"since": _iso(since), "until": _iso(until)}
            run.export_window = (
                f"the last {args.window_days} days (`since={params['since']}&until={params['until']}`)"
            )
            log("exports: CSV vs with proofs")
            phase = time.perf_counter()
            vkey = client.get(f"/api/v1/accounts/{account}/verifier-key").json()["verifier_key"]
            run_exports(client, run, params, args.export_runs, workdir, vkey)
            run.phases["exports"] = time.perf_counter() - phase
        log("appends with and without the tree")
        phase = time.perf_counter()
        run_appends(store, args.append_runs, args.append_seconds, run, signer)
        run.phases["appends"] = time.perf_counter() - phase
        log("done")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return run


def _iso(instant: datetime) -> str:
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the report -------------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def summary_rows(run: EngineRun) -> list[list[str]]:
    rows = []
    for name, samples in run.endpoints.items():
        worst = p95(samples)
        rows.append(
            [
                f"{name}: p95 < {P95_MS:g} ms",
                f"{_mark(worst < P95_MS)} p95 {worst:.2f} ms, median {statistics.median(samples):.2f} ms",
            ]
        )
    w, wo = run.appends["with tree"].median, run.appends["without tree"].median
    cost = 1 - w / wo
    rows.append(
        [
            f"appends: the tree costs ≤ {APPEND_COST:.0%}",
            f"{_mark(cost <= APPEND_COST)} {w:,.0f}/s with vs {wo:,.0f}/s without = {w / wo:.0%}"
            f" (the tree costs {cost:.0%})",
        ]
    )
    v, s = run.verify["verify_account"].median, run.verify["stdlib"].median
    rows.append(
        [
            f"full verify ≥ {VERIFY_SHARE:.0%} of the stdlib loop",
            f"{_mark(v / s >= VERIFY_SHARE)} {v:,.0f} vs {s:,.0f} rows/s = {v / s:.0%}",
        ]
    )
    p, c = run.exports["proof"].median, run.exports["csv"].median
    rows.append(
        [
            "export with proofs vs CSV export (no target)",
            f"{p:,.0f} vs {c:,.0f} rows/s = {p / c:.0%} ({run.export_rows:,} rows)",
        ]
    )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _each(rates: Rates) -> str:
    return ", ".join(f"{x:,.0f}" for x in rates.each)


def render(runs: list[EngineRun], args: argparse.Namespace, started: datetime, load_start: Any) -> str:
    minutes = (datetime.now(UTC) - started).total_seconds() / 60
    out = [
        "# Proofs benchmark: the Merkle tree's cost and its proofs' speed",
        "",
        f"Generated by `make bench-proofs` (`bench/proofs.py {' '.join(sys.argv[1:])}`) on "
        f"{started:%Y-%m-%d %H:%M} UTC; the run took {minutes:.1f} min. Overwritten by every run.",
        "",
        "## Against the issue's targets",
        "",
    ]
    for run in runs:
        size = run.head
        out += [f"### {run.engine}: an account of {size:,} entries", ""]
        out += _table(["target", "result"], summary_rows(run))
        out.append("")
    out += ["## Checks (before anything was timed, or on what was timed)", ""]
    for run in runs:
        out += [f"- {run.engine}: " + c for c in run.checks]
    out += ["", "## Proof endpoints", ""]
    out.append(
        "One request at a time over loopback HTTP/1.1 to `activitylog serve` (workers on, as `make run`),"
        f" {args.requests} timed requests per endpoint after 5 warm-ups, the four endpoints interleaved;"
        " wall time until the whole body arrived. Every inclusion proof served was checked against the"
        " head's signed root. Nearest-rank p95."
    )
    out.append("")
    rows = []
    for run in runs:
        for name, samples in run.endpoints.items():
            rows.append(
                [
                    run.engine,
                    name,
                    f"{statistics.median(samples):.2f}",
                    f"{p95(samples):.2f}",
                    f"{max(samples):.2f}",
                ]
            )
    out += _table(["engine", "endpoint", "median ms", "p95 ms", "max ms"], rows)
    out += ["", "## Appends with and without the tree", ""]
    out.append(
        "The real recorder (`services.lists.create_list` in a fresh `UnitOfWork`: one durable"
        " transaction, a list row and its entry), one writer in the benchmark's process, each path on an"
        " account of its own. *Without tree* patches `log.tree.append` in this process only to return the"
        " frontier unchanged and no subtree hashes (so no `activity_tree` row, an empty head edge); the"
        f" product is unchanged. Rounds of {args.append_seconds:g} s alternate (and swap which goes"
        " first). Appends/s per round:"
    )
    out.append("")
    rows = []
    for run in runs:
        w, wo = run.appends["with tree"], run.appends["without tree"]
        rows.append(
            [
                run.engine,
                f"{w.median:,.0f}",
                f"{wo.median:,.0f}",
                f"{w.median / wo.median:.0%}",
                _each(w),
                _each(wo),
            ]
        )
    out += _table(
        ["engine", "with tree (median)", "without", "ratio", "with, each round", "without, each round"], rows
    )
    out += ["", "## Full verify vs a stdlib loop", ""]
    out.append(
        "`verify_account` (what `activitylog verify` and `GET /activity/verify` run: chain, canonical"
        " `changes`, summary, `ip_key`, `csv_escapes`, the search index on SQLite, every stored subtree hash"
        " and the head's edge) on the big account, in the benchmark's process, vs a plain loop over the same"
        " entries with the bare driver (`sqlite3` / a psycopg server-side cursor of 5,000) that selects the"
        " chained columns, rebuilds the canonical JSON with `json.dumps` and checks"
        ' `sha256(prev + "\\n" + canonical)` and the link; nothing else. Runs alternate. Rows/s per run:'
    )
    out.append("")
    rows = []
    for run in runs:
        v, s = run.verify["verify_account"], run.verify["stdlib"]
        rows.append(
            [
                run.engine,
                f"{v.median:,.0f}",
                f"{s.median:,.0f}",
                f"{v.median / s.median:.0%}",
                _each(v),
                _each(s),
            ]
        )
    out += _table(
        ["engine", "verify_account (median)", "stdlib loop", "ratio", "verify, each run", "loop, each run"],
        rows,
    )
    out += ["", "## Export with proofs vs the CSV export", ""]
    for run in runs:
        out.append(f"- {run.engine}: slice = {run.export_window}, {run.export_rows:,} rows")
    out.append("")
    out.append(
        "Both through the API, streamed to the client and counted: `GET /api/v1/activity/export?format=csv`"
        " and `GET /api/v1/activity/export/proof?tree_size=` the CSV's `X-Activity-As-Of-Seq` (each row's"
        " audit path in one signed tree); the order alternates. Rows/s per run:"
    )
    out.append("")
    rows = []
    for run in runs:
        p, c = run.exports["proof"], run.exports["csv"]
        rows.append(
            [
                run.engine,
                f"{p.median:,.0f}",
                f"{c.median:,.0f}",
                f"{p.median / c.median:.0%}",
                _each(p),
                _each(c),
            ]
        )
    out += _table(
        ["engine", "with proofs (median)", "CSV", "ratio", "proofs, each run", "CSV, each run"], rows
    )
    out += ["", "## Machine, data and phases", ""]
    rows = [
        ["nproc", str(os.cpu_count())],
        ["Python", sys.version.split()[0]],
        ["load average at start", " / ".join(f"{x:.2f}" for x in load_start)],
        ["load average at end", " / ".join(f"{x:.2f}" for x in os.getloadavg())],
    ]
    for run in runs:
        rows.append([f"{run.engine}: highest 1-min load sampled", f"{max(run.load or [0]):.2f}"])
        rows += [[f"{run.engine}: {k}", v] for k, v in run.info.items()]
        rows += [[f"{run.engine}: {k}", v] for k, v in run.rows.items()]
        if run.seeded:
            rows += [[f"{run.engine}: seeding: {k}", f"{v:,.1f} s"] for k, v in run.seeded.phases.items()]
        rows += [[f"{run.engine}: phase: {k}", f"{v:,.1f} s"] for k, v in run.phases.items()]
    out += _table(["", ""], rows)
    out.append("")
    return "\n".join(out)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50,000 entries, short runs: a smoke test")
    parser.add_argument("--entries", type=int, help="entries of the account under test (2,000,000)")
    parser.add_argument("--accounts", type=int, default=20, help="accounts seeded, the first holding 90%%")
    parser.add_argument("--requests", type=int, help="timed requests per proof endpoint (200)")
    parser.add_argument("--checks", type=int, default=20, help="proofs of each kind checked before timing")
    parser.add_argument("--export-runs", type=int, help="runs of each export (3)")
    parser.add_argument("--window-days", type=int, default=30, help="the exported slice: the last N days")
    parser.add_argument("--verify-runs", type=int, help="runs of verify_account and of the stdlib loop (3)")
    parser.add_argument("--append-runs", type=int, help="rounds of appends per path (5)")
    parser.add_argument("--append-seconds", type=float, help="length of one append round (4)")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL server to create the database on")
    args = parser.parse_args(argv)
    quick = {
        "entries": 50_000,
        "requests": 40,
        "export_runs": 2,
        "verify_runs": 2,
        "append_runs": 2,
        "append_seconds": 1.0,
    }
    full = {
        "entries": 2_000_000,
        "requests": 200,
        "export_runs": 3,
        "verify_runs": 3,
        "append_runs": 5,
        "append_seconds": 4.0,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def _open(engine: str, args: argparse.Namespace) -> AbstractContextManager[Store]:
    if engine == "sqlite":
        return sqlite_store(name="proofs.db")
    if engine == "postgresql":
        psycopg.connect(args.pg_url, connect_timeout=5).close()
        return postgres_store(args.pg_url)
    raise SystemExit(f"unknown engine {engine!r}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started, load_start = datetime.now(UTC), os.getloadavg()
    runs = []
    for engine in (e.strip() for e in args.engines.split(",") if e.strip()):
        with _open(engine, args) as store:
            runs.append(bench_engine(store, args))
        RESULTS.write_text(
            render(runs, args, started, load_start)
        )  # after each engine: a late failure keeps it
    print(f"wrote {RESULTS}")
    for run in runs:
        for target, result in summary_rows(run):
            print(f"  {run.engine}: {target}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
