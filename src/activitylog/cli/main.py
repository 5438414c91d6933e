"""The ``activitylog`` command. Every mutation it makes is logged with actor ``system:cli``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading

import typer
import uvicorn
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, ProgrammingError

from activitylog import logs
from activitylog.alerts import integrity
from activitylog.cli import counts, demo, log_commands, retention, witness
from activitylog.cli import streams as stream_commands
from activitylog.cli.common import CLI_CONTEXT, cli_uow, database, err, fail, require_account
from activitylog.config import Settings
from activitylog.db.base import Database, connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import Account
from activitylog.db.roles import grant_app_role
from activitylog.errors import DomainError
from activitylog.log.chain import format_instant
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected, checkpoint_all, memory_dir
from activitylog.log.record import ResourceRef
from activitylog.log.signing import SigningKeyError, key_file, load_signer, public_pem, rotate_key_file
from activitylog.log.tree_store import TreeReader
from activitylog.log.verify import verify_account
from activitylog.services import accounts, api_keys
from activitylog.services.auth import SCOPES
from activitylog.services.uow import SYSTEM_CLI
from activitylog.web import serving
from activitylog.workers import WorkerProcess, run_workers, stop_on_signals

log = logging.getLogger("activitylog.cli")
app = typer.Typer(no_args_is_help=True, help="An email-marketing account with a tamper-evident activity log.")
account_app = typer.Typer(no_args_is_help=True, help="Manage accounts.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app.add_typer(account_app, name="account")
app.add_typer(key_app, name="api-key")
signing_app = typer.Typer(no_args_is_help=True, help="The key that signs checkpoints.")
app.add_typer(signing_app, name="signing-key")
app.add_typer(stream_commands.app, name="streams")


@app.command()
def migrate(
    app_role: str = typer.Option(
        None, help="PostgreSQL: grant this role what the app needs, and only SELECT/INSERT on the log."
    ),
) -> None:
    """Apply database migrations (as the tables' owner)."""
    db = database()
    upgrade(db)
    err.print(f"migrated {db.url.split('@')[-1]}")
    if app_role:
        try:
            grant_app_role(db, app_role)
        except ValueError as exc:
            fail(f"--app-role: {exc}")
        err.print(f"granted {app_role} read/append-only access to the log")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    no_migrate: bool = typer.Option(False, "--no-migrate", help="Do not apply migrations first."),
    no_workers: bool = typer.Option(
        False, "--no-workers", help="Leave scheduling, delivery and checkpoints to 'activitylog worker'."
    ),
    processes: int = typer.Option(
        None,
        "--processes",
        min=1,
        max=64,
        help="Processes answering requests (default: ACTIVITYLOG_WEB_PROCESSES, else one per CPU).",
    ),
) -> None:
    """Serve the API and dashboard; scheduling, delivery and checkpoints run in a worker process beside it."""
    from activitylog.web.app import create_app  # noqa: PLC0415  (other commands need no web stack)
    from activitylog.web.guards import MAX_REQUEST_HEAD_BYTES  # noqa: PLC0415

    settings = Settings()
    processes = processes or settings.web_processes or os.cpu_count() or 1
    logs.configure(settings.log_level)
    metrics_dir = None
    if settings.metrics and not settings.worker_metrics_dir and (processes > 1 or not no_workers):
        # the other processes' metrics (the worker's, the other web processes'), for /metrics to add
        metrics_dir = tempfile.mkdtemp(prefix="activitylog-metrics-")
        os.environ["ACTIVITYLOG_WORKER_METRICS_DIR"] = metrics_dir  # every child process inherits it
        settings = Settings()
    db = connect(settings.database_url)
    if not no_migrate:
        upgrade(db)
    _checkpoint_signer(settings)  # a key that cannot be used stops serve here, with its reason
    where = "ACTIVITYLOG_SIGNING_KEY" if settings.signing_key else str(key_file(settings))
    log.info("checkpoints: signing key %s, the signer's memory %s", where, memory_dir(settings))
    workers = None if no_workers else WorkerProcess()
    if workers is not None:
        workers.start()
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again to the handler that was
    # there before it: this one, which ends serve normally, so the worker process is stopped below.
    signal.signal(signal.SIGTERM, _exit_normally)
    signal.signal(signal.SIGINT, _exit_normally)
    log.info("serving on %s:%d with %d process%s", host, port, processes, "" if processes == 1 else "es")
    try:
        serving.run(
            uvicorn.Config(
                # several processes each build the app for themselves, from the same environment
                create_app(settings, db) if processes == 1 else "activitylog.web.app:from_environment",
                factory=processes > 1,
                workers=processes,
                # a process that does not answer its supervisor's ping in time is killed and replaced: on a
                # small, busy machine a process still importing the app can take longer than uvicorn's 5 s
                timeout_worker_healthcheck=30,
                host=host,
                port=port,
                proxy_headers=False,
                h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,  # an over-long query: a 414 saying so
                log_config=None,  # logs.configure's JSON lines, for uvicorn's own messages too
                access_log=False,  # web/observe.py writes one line per request, with its request id
            )
        )
    finally:
        if workers is not None:
            workers.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _exit_normally(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@app.command()
def worker(
    parent_pid: int = typer.Option(None, "--parent-pid", hidden=True, help="Exit when this process is gone."),
) -> None:
    """Run the background work alone: scheduled and sending broadcasts, checkpoints, stream delivery and
    retention purges (serve starts this in a process of its own)."""
    settings = Settings()
    logs.configure(settings.log_level)
    db = connect(settings.database_url)
    stop = threading.Event()
    stop_on_signals(stop)
    log.info(
        "worker: broadcasts every %ss, streams every %ss, checkpoints every %ss; Ctrl-C stops",
        settings.worker_interval_seconds,
        settings.stream_interval_seconds,
        settings.checkpoint_interval_seconds,
    )
    run_workers(db, settings, stop, parent_pid)


@account_app.command("create")
def account_create(
    name: str = typer.Option(..., help="Account name."),
    owner_email: str = typer.Option(..., help="Email of the account's owner (signs in with it)."),
    password: str = typer.Option(..., help="The owner's password (at least 8 characters)."),
) -> None:
    """Create an account and its owner; prints JSON {account_id, user_id}."""
    if len(password) < 8:
        fail("--password: at least 8 characters")
    if "@" not in owner_email:
        fail("--owner-email: not an email address")
    try:
        created = accounts.create_account(
            database(),
            name=name,
            owner_email=owner_email,
            password=password,
            actor=SYSTEM_CLI,
            context=CLI_CONTEXT,
        )
    except DomainError as exc:
        fail(exc.message)
    except Exception as exc:  # an integrity error on the owner's email
        if "unique" in str(exc).lower() or "duplicate" in str(exc).lower():
            fail(f"--owner-email: {owner_email} already has a user")
        raise
    print(json.dumps({"account_id": created.account.id, "user_id": created.owner.id}))


@key_app.command("create")
def api_key_create(
    account: str = typer.Option(..., help="Account id (acc_...)."),
    name: str = typer.Option(..., help="A label for the key, e.g. 'Zapier sync'."),
    scope: list[str] = typer.Option(["full"], help="Scopes: full, read, write, activity:read (repeatable)."),
) -> None:
    """Create an API key; prints JSON {id, key} — the key is shown only once."""
    unknown = [s for s in scope if s not in SCOPES]
    if unknown:
        fail(f"--scope: unknown {', '.join(unknown)}; one of {', '.join(SCOPES)}")
    db = database()
    require_account(db, account)
    try:
        issued = api_keys.create_api_key(cli_uow(db, account), name=name, scopes=scope)
    except DomainError as exc:
        fail(exc.message)
    print(json.dumps({"id": issued.key.id, "key": issued.secret}))


def _checkpoint_signer(settings: Settings) -> CheckpointSigner:
    try:
        return CheckpointSigner(settings, load_signer(settings))
    except SigningKeyError as exc:
        fail(str(exc))


@app.command()
def verify(account: str = typer.Option(None, help="Only this account (acc_...).")) -> None:
    """Re-compute every hash chain and Merkle tree and check each against the last checkpoint the signer
    signed; exit 0 if intact, 1 naming the first bad seq. A broken account gets its integrity.failure
    alert, as from the API's verify."""
    settings = Settings()
    db, signer = database(), _checkpoint_signer(settings)
    if account:
        require_account(db, account)
    bad = 0
    with db.system().reader() as session:
        ids = [account] if account else list(session.scalars(select(Account.id).order_by(Account.id)))
    for account_id in ids:
        try:
            anchor = signer.last_signed(account_id)
        except HistoryRejected as exc:
            bad += 1
            print(f"{account_id}: BROKEN: {exc.message}")
            integrity.verify_failed(db, settings, account_id, integrity.rejected(exc))
            continue
        with db.for_account(account_id).reader() as session:
            verdict = verify_account(session, account_id, anchor)
        signed = f", signed tree {anchor.size}" if anchor else ", no signed checkpoint yet"
        if verdict.ok:
            print(f"{account_id}: ok, {verdict.checked} entries{signed}, head {verdict.head_hash}")
            for gone in verdict.purged:  # gaps the retention made, with their policy: not tampering
                policy = f"retention {gone.retention_days} days: before {format_instant(gone.older_than)}"
                print(
                    f"{account_id}: purged seq {gone.first}-{gone.last} ({policy}; "
                    f"purge entry seq {gone.purge_seq})"
                )
        else:
            bad += 1
            print(f"{account_id}: BROKEN at seq {verdict.first_bad_seq}: {verdict.reason}")
            integrity.verify_failed(db, settings, account_id, verdict)  # as the API's verify does
    raise typer.Exit(1 if bad else 0)


@app.command()
def checkpoint(
    account: str = typer.Option(None, help="Only this account (acc_...)."),
    accept_history: str = typer.Option(
        None,
        "--accept-history",
        metavar="ACCOUNT",
        help="After a restore on purpose: sign this account's tree as the database now has it, although it "
        "does not extend what was signed before (logged).",
    ),
) -> None:
    """Sign a checkpoint of each account's tree that moved since the signer's last one."""
    settings = Settings()
    db, signer = database(), _checkpoint_signer(settings)
    if accept_history:
        require_account(db, accept_history)
        _accept_history(db, signer, accept_history)
        return
    if account:
        require_account(db, account)
        try:
            print(signer.sign(db, account), end="")
        except HistoryRejected as exc:
            fail(exc.message)
        return
    err.print(f"signed {checkpoint_all(db, signer)} checkpoints with {signer.signer.key_id}")


def _accept_history(db: Database, signer: CheckpointSigner, account_id: str) -> None:
    try:
        before = signer.last_signed(account_id)
    except HistoryRejected:
        before = None
    accepted = f"{before.size} {before.root.hex()}" if before else None
    uow = cli_uow(db, account_id)
    with uow:
        head = TreeReader(uow.session.connection(), account_id).head()
        uow.record(
            "activity_log.update",
            ResourceRef("activity_log", account_id, "activity log"),
            changes={"signed_tree": {"from": accepted, "to": f"{head.size} {head.root.hex()}"}},
        )
        uow.commit()
    _, note = signer.accept_history(db, account_id)
    err.print(f"{account_id}: the signer now vouches for the tree as the database holds it")
    print(note, end="")


@signing_app.command("rotate")
def signing_key_rotate() -> None:
    """Start signing with a new key; the old key file stays beside it, so checkpoints it signed still
    verify (publish the new verifier keys: GET /api/v1/accounts/{id}/verifier-key)."""
    settings = Settings()
    try:
        path = rotate_key_file(settings)
    except SigningKeyError as exc:
        fail(str(exc))
    err.print(f"now signing with {load_signer(settings).key_id} (key file {path})")


@signing_app.command("show")
def signing_key_show() -> None:
    """Print where the key is, its public half (PEM) and, with --account, that account's verifier key."""
    settings = Settings()
    signer = load_signer(settings)
    where = "ACTIVITYLOG_SIGNING_KEY" if settings.signing_key else str(key_file(settings))
    print(f"# {signer.key_id} ({where})\n{public_pem(signer.public_b64)}", end="")


app.command(name="demo")(demo.demo)
app.command(name="log")(log_commands.log)
app.command(name="verify-export")(log_commands.verify_export)
app.command(name="witness")(witness.witness)
app.command(name="purge")(retention.purge)
app.command(name="erase")(retention.erase)
app.command(name="counts")(counts.counts)


# What each engine says when a table or column the code reads is not there: the schema is missing or older.
_NO_SCHEMA = ("no such table", "no such column", "UndefinedTable", "UndefinedColumn")


def main() -> None:
    """The ``activitylog`` command. A database without the current schema (never migrated, or migrated by
    an older release) is one line saying what to run, not a traceback."""
    try:
        app()
    except (OperationalError, ProgrammingError) as exc:
        if not any(marker in f"{type(exc.orig).__name__} {exc.orig}" for marker in _NO_SCHEMA):
            raise
        err.print(
            "[red]error:[/red] the database does not have this release's tables: run "
            f"`activitylog migrate` first ({str(exc.orig).splitlines()[0]})"
        )
        sys.exit(2)
