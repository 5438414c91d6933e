"""The ``activitylog`` command. Every mutation it makes is logged with actor ``system:cli``."""

from __future__ import annotations

import json

import typer
import uvicorn
from sqlalchemy import select

from activitylog.cli import demo, log_commands
from activitylog.cli.common import CLI_CONTEXT, cli_uow, database, err, fail, require_account
from activitylog.config import Settings
from activitylog.db.base import connect
from activitylog.db.migrate import upgrade
from activitylog.db.models import Account
from activitylog.db.roles import grant_app_role
from activitylog.errors import DomainError
from activitylog.log.checkpoints import checkpoint_account, checkpoint_all, checkpoint_to_api, register_key
from activitylog.log.signing import SigningKeyError, load_signer, public_pem, rotate_key_file
from activitylog.log.verify import verify_account
from activitylog.services import accounts, api_keys
from activitylog.services.auth import SCOPES
from activitylog.services.uow import SYSTEM_CLI
from activitylog.workers import BroadcastWorker, Checkpointer

app = typer.Typer(no_args_is_help=True, help="An email-marketing account with a tamper-evident activity log.")
account_app = typer.Typer(no_args_is_help=True, help="Manage accounts.")
key_app = typer.Typer(no_args_is_help=True, help="Manage API keys.")
app.add_typer(account_app, name="account")
app.add_typer(key_app, name="api-key")
signing_app = typer.Typer(no_args_is_help=True, help="The key that signs checkpoints.")
app.add_typer(signing_app, name="signing-key")


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
) -> None:
    """Serve the API and dashboard."""
    from activitylog.web.app import create_app  # noqa: PLC0415  (other commands need no web stack)

    settings = Settings()
    db = connect(settings.database_url)
    if not no_migrate:
        upgrade(db)
    workers = [Checkpointer(db, settings), BroadcastWorker(db, settings)] if not no_workers else []
    for worker in workers:
        worker.start()
    try:
        uvicorn.run(create_app(settings, db), host=host, port=port, proxy_headers=False, log_level="info")
    finally:
        for worker in workers:
            worker.stop()


@app.command()
def worker() -> None:
    """Run the scheduler, dispatcher and checkpoints alone (for deployments that split them from serve)."""
    settings = Settings()
    db = connect(settings.database_url)
    checkpointer = Checkpointer(db, settings)
    checkpointer.start()
    err.print(f"worker: scheduling and delivering every {settings.worker_interval_seconds}s; Ctrl-C stops")
    try:
        BroadcastWorker(db, settings).run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        checkpointer.stop()


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


@app.command()
def verify(account: str = typer.Option(None, help="Only this account (acc_...).")) -> None:
    """Re-compute every hash chain; exit 0 if intact, 1 naming the first bad seq."""
    db = database()
    if account:
        require_account(db, account)
    bad = 0
    with db.reader() as session:
        ids = [account] if account else list(session.scalars(select(Account.id).order_by(Account.id)))
        for account_id in ids:
            verdict = verify_account(session, account_id)
            if verdict.ok:
                print(f"{account_id}: ok, {verdict.checked} entries, head {verdict.head_hash}")
            else:
                bad += 1
                print(f"{account_id}: BROKEN at seq {verdict.first_bad_seq}: {verdict.reason}")
    raise typer.Exit(1 if bad else 0)


@app.command()
def checkpoint(account: str = typer.Option(None, help="Only this account (acc_...).")) -> None:
    """Sign a checkpoint of each account's chain head that moved since its last one."""
    settings = Settings()
    db, signer = database(), load_signer(settings)
    if account:
        require_account(db, account)
        row = checkpoint_account(db, account, signer)
        print(json.dumps(checkpoint_to_api(row) if row else None))
        return
    err.print(f"signed {checkpoint_all(db, signer)} checkpoints with {signer.key_id}")


@signing_app.command("rotate")
def signing_key_rotate() -> None:
    """Start signing with a new key; the old public key stays published so old checkpoints still verify."""
    settings = Settings()
    try:
        path = rotate_key_file(settings)
    except SigningKeyError as exc:
        fail(str(exc))
    signer = load_signer(settings)
    db = connect(settings.database_url)
    with db.writer() as session:
        register_key(session, signer)
        session.commit()
    err.print(f"now signing with {signer.key_id} (key file {path})")


@signing_app.command("show")
def signing_key_show() -> None:
    """Print the current public key (PEM) and its id, to publish or pin."""
    signer = load_signer(Settings())
    print(f"# {signer.key_id}\n{public_pem(signer.public_b64)}", end="")


app.command(name="demo")(demo.demo)
app.command(name="log")(log_commands.log)
app.command(name="verify-export")(log_commands.verify_export)
