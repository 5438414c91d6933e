"""``activitylog log`` and ``activitylog verify-export``: the log from the shell, with the API's filters."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table
from sqlalchemy import func, select

from activitylog.cli.common import cli_uow, database, err, fail, require_account
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.errors import DomainError
from activitylog.log import verify_export as export_check
from activitylog.log.checkpoints import CheckpointSigner
from activitylog.log.entry import entry_to_api
from activitylog.log.export import manifest, stream, stream_proofs
from activitylog.log.filters import BY_NAME, FILTERS
from activitylog.log.query import ActivityFilter, conditions, page_rows, parse_filter
from activitylog.log.signing import load_signer
from activitylog.services.exports import log_export


def _count(db: Database, account_id: str, f: ActivityFilter) -> int:
    with db.reader() as session:
        return int(
            session.execute(select(func.count()).where(*conditions(account_id, f, db.dialect))).scalar_one()
        )


def _table(db: Database, account_id: str, f: ActivityFilter, limit: int) -> None:
    with db.reader() as session:
        rows = page_rows(session, account_id, f, dialect=db.dialect, before_seq=None, limit=limit)[:limit]
    table = Table(box=None, header_style="bold")
    for column in ("seq", "occurred_at", "actor", "ip", "action"):
        table.add_column(column, no_wrap=True)
    table.add_column("summary")
    for row in rows:
        e = entry_to_api(row)
        actor = f"{e['actor']['type']}:{e['actor']['name'] or e['actor']['id']}"
        table.add_row(str(e["seq"]), e["occurred_at"], actor, e["ip"] or "", e["action"], e["summary"])
    Console(width=None if sys.stdout.isatty() else 240).print(table)
    if not rows:
        err.print("no entries match; widen the filters")


def _write(chunks: Iterable[bytes], out: IO[bytes], total: int, show: bool, fmt: str) -> None:
    columns = (
        TextColumn("exporting"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]} rows/s"),
    )
    newline = b"\n"
    with Progress(*columns, console=err, disable=not show) as progress:
        task = progress.add_task("export", total=total, rate="-")
        done = -1 if fmt == "csv" else 0  # the CSV header is a line too
        for chunk in chunks:
            out.write(chunk)
            done += chunk.count(newline)
            elapsed = progress.tasks[0].elapsed or 0
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "-"
            progress.update(task, completed=min(max(done, 0), total), rate=rate)


def log(
    account: str = typer.Option(..., help="Account id (acc_...)."),
    fmt: str = typer.Option("table", "--format", help="table (newest first), csv or jsonl (oldest first)."),
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    limit: int = typer.Option(50, min=1, max=1000, help="Rows shown by --format table."),
    proofs: bool = typer.Option(
        False, "--proofs", help="With -o F: also write F.proof.jsonl, every row's proof in the signed tree."
    ),
    **filters: str | None,
) -> None:
    """Query the log, or export the filtered slice (a CSV or JSONL export is itself logged). With -o F it
    also writes the signed manifest F.manifest.json, and with --proofs the proof file F.proof.jsonl.
    The filters are the API's (log/filters.py), as --actor, --on-behalf-of, --resource-id and so on."""

    if fmt not in ("table", "csv", "jsonl"):
        fail("--format: one of table, csv, jsonl")
    if proofs and (fmt == "table" or output is None):
        fail("--proofs: needs --format csv or jsonl and --output F")
    try:
        f = parse_filter(**filters)
    except DomainError as exc:
        spec = BY_NAME.get(exc.field or "")
        option = spec.option if spec else f"--{(exc.field or '').replace('_', '-')}"
        fail(f"{option}: {exc.message.split(': ', 1)[-1]}")
    db = database()
    require_account(db, account)
    if fmt == "table":
        _table(db, account, f, limit)
        return
    as_of = log_export(cli_uow(db, account), f, fmt)
    total = _count(db, account, f)
    chunks = stream(db, account, f, fmt, as_of)
    if output is None:
        _write(chunks, sys.stdout.buffer, total, show=False, fmt=fmt)
        return
    with output.open("wb") as out:
        _write(chunks, out, total, show=total > 0, fmt=fmt)
    settings = Settings()
    signer = CheckpointSigner(settings, load_signer(settings))
    signed = manifest(db, signer, account, f, fmt, as_of)
    manifest_path = output.with_name(output.name + ".manifest.json")
    manifest_path.write_text(json.dumps(signed, indent=2) + "\n", encoding="utf-8")
    written = f"its signed manifest to {manifest_path}"
    if proofs:
        proof_path = output.with_name(output.name + ".proof.jsonl")
        with proof_path.open("wb") as out:  # the tree of as_of entries: the one the export was taken from
            for chunk in stream_proofs(db, signer, account, f, as_of):
                out.write(chunk)
        written += f", its proof file to {proof_path}"
    err.print(f"wrote {signed['rows']} entries to {output}, {written}")


def _with_filter_options(command: Callable[..., None]) -> Callable[..., None]:
    """``command``'s signature with one ``--<name>`` option per declared filter in place of ``**filters``,
    each with the filter's own description (what Typer reads to build the options and their help)."""
    signature = inspect.signature(command)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    options = [
        inspect.Parameter(
            spec.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, spec.option, help=spec.description.replace("`", "")),
            annotation=str,
        )
        for spec in FILTERS
    ]
    command.__signature__ = signature.replace(parameters=[*fixed, *options])  # type: ignore[attr-defined]
    return command


log = _with_filter_options(log)


def verify_export(
    file: Path = typer.Argument(..., help="An exported CSV or JSON Lines file."),
    proof: Path = typer.Option(None, "--proof", help="Its proof file (.proof.jsonl)."),
    manifest_file: Path = typer.Option(None, "--manifest", help="Its signed manifest (.manifest.json)."),
    verifier_key: str = typer.Option(
        None, "--verifier-key", help="The account's note verifier key, or a file holding it (out of band)."
    ),
) -> None:
    """Check an export on its own: every row's hash, summary, changes text and formula guards, and the
    links between consecutive seqs; with --proof and --verifier-key every row against the signed tree,
    with --manifest that no row of the slice is missing. Exit 0 intact, 1 tampered, 2 cannot check."""
    args = [str(file)]
    for option, value in (
        ("--proof", proof),
        ("--manifest", manifest_file),
        ("--verifier-key", verifier_key),
    ):
        if value is not None:
            args += [option, str(value)]
    raise typer.Exit(export_check.main(args))
