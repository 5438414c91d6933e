"""``activitylog streams …``: an account's streams from the shell, through the same service as the API.

Every change (create, pause, resume, replay, delete) is an entry by ``system:cli``. What a script reads is
JSON on standard output: ``create`` (with the ``whsec_…`` secret, shown only then), the changes (the stream
as ``GET /api/v1/streams/{id}`` shows it), ``test``, and ``list``/``deliveries`` with ``--json`` (one
object per line); without it those two print a table.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from activitylog.cli.common import cli_uow, database, fail, require_account
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import Stream
from activitylog.errors import DomainError
from activitylog.relay.senders import Senders, send_test
from activitylog.services import streams

app = typer.Typer(no_args_is_help=True, help="Streams: the log delivered to a webhook or NATS JetStream.")


def _json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat().replace("+00:00", "Z")
        raise TypeError(type(obj).__name__)

    return json.dumps(value, default=default, ensure_ascii=False)


def _stream(db: Database, stream_id: str) -> Stream:
    """The stream by its id, in whichever account holds it (an operator's tool reads across accounts)."""
    with db.reader() as session:
        found = session.execute(select(Stream).where(Stream.id == stream_id)).scalar_one_or_none()
    if found is None:
        fail(f"no stream {stream_id}", 1)
    return found


def _view(db: Database, stream: Stream) -> dict[str, Any]:
    return streams.view(db.for_account(stream.account_id), stream)


def _filter(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            fail(f"--filter: {value!r} is not NAME=VALUE (e.g. action=broadcast.*)")
        out[name] = text
    return out


@app.command("list")
def list_streams(
    account: str = typer.Option(..., help="Account id (acc_...)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """The account's streams, with their state, delivered seq, lag and last error."""
    db = database()
    require_account(db, account)
    with db.reader() as session:
        rows = session.scalars(
            select(Stream).where(Stream.account_id == account).order_by(Stream.created_at, Stream.id)
        ).all()
    views = [_view(db, row) for row in rows]
    if as_json:
        for v in views:
            print(_json(v))
        return
    table = Table(box=None, header_style="bold")
    columns = ("id", "name", "type", "destination", "format", "state", "delivered", "lag s", "last error")
    for column in columns:
        table.add_column(column, no_wrap=column != "last error")
    for v in views:
        table.add_row(
            v["id"], v["name"], v["type"], v["url"] or v["subject"], v["format"], v["state"],
            str(v["delivered_seq"]), f"{v['lag_seconds']:g}", v["last_error"] or "",
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 240).print(table)


@app.command("create")
def create(
    account: str = typer.Option(..., help="Account id (acc_...)."),
    name: str = typer.Option(..., help="A label, e.g. 'SIEM'."),
    kind: str = typer.Option(..., "--type", help="webhook or nats."),
    url: str = typer.Option(None, help="webhook: the http(s) URL to POST each event to."),
    subject: str = typer.Option(None, help="nats: the subject prefix (events go to <subject>.<account>.…)."),
    fmt: str = typer.Option("json", "--format", help="json (the entry as the API returns it) or ocsf."),
    filter_: list[str] = typer.Option(
        [], "--filter", help="An activity filter NAME=VALUE (repeatable), e.g. action=broadcast.*."
    ),
    signing: str = typer.Option(None, help="webhook: hmac (default) or ed25519."),
    from_seq: int = typer.Option(None, min=1, help="The first entry to deliver (default: the create entry)."),
) -> None:
    """Create a stream; prints it as JSON, with its whsec_ secret (shown only this once)."""
    db = database()
    require_account(db, account)
    if kind not in streams.TYPES:
        fail(f"--type: one of {', '.join(streams.TYPES)}")
    if fmt not in streams.FORMATS:
        fail(f"--format: one of {', '.join(streams.FORMATS)}")
    if signing is not None and signing not in streams.SIGNINGS:
        fail(f"--signing: one of {', '.join(streams.SIGNINGS)}")
    values = {
        "name": name, "type": kind, "url": url, "subject": subject, "format": fmt,
        "filter": _filter(filter_), "signing": signing, "from_seq": from_seq,
    }  # fmt: skip
    try:
        created = streams.create_stream(cli_uow(db, account), values, Settings())
    except DomainError as exc:
        fail(exc.message)
    print(_json({**_view(db, created.stream), "secret": created.secret}))


def _change(stream_id: str, action: Any) -> None:
    db = database()
    stream = _stream(db, stream_id)
    try:
        changed = action(cli_uow(db, stream.account_id), stream.id)
    except DomainError as exc:
        fail(exc.message, 1)
    if changed is not None:
        print(_json(_view(db, changed)))


@app.command("pause")
def pause(stream_id: str = typer.Argument(..., help="The stream (stm_...).")) -> None:
    """Stop delivering (the cursor stays where it is); prints the stream."""
    _change(stream_id, streams.pause_stream)


@app.command("resume")
def resume(stream_id: str = typer.Argument(..., help="The stream (stm_...).")) -> None:
    """Deliver a paused or disabled stream again, from where it stopped; prints the stream."""
    _change(stream_id, streams.resume_stream)


@app.command("replay")
def replay(
    stream_id: str = typer.Argument(..., help="The stream (stm_...)."),
    from_seq: int = typer.Option(..., min=1, help="Deliver again from this seq (the same event ids)."),
) -> None:
    """Move the stream back to FROM_SEQ; prints the stream."""
    _change(stream_id, lambda uow, sid: streams.replay_stream(uow, sid, from_seq))


@app.command("delete")
def delete(stream_id: str = typer.Argument(..., help="The stream (stm_...).")) -> None:
    """Delete the stream and its delivery history; prints {"deleted": id}."""
    _change(stream_id, streams.delete_stream)
    print(_json({"deleted": stream_id}))


@app.command("test")
def test(stream_id: str = typer.Argument(..., help="The stream (stm_...).")) -> None:
    """Send one activity.test event now; prints {delivered, event_id, status_code, error, duration_ms} and
    exits 1 if the destination did not acknowledge it."""
    db = database()
    stream = _stream(db, stream_id)
    senders = Senders(Settings())
    try:
        result = send_test(db.for_account(stream.account_id), senders, stream)
    finally:
        senders.close()
    print(_json(result))
    if not result["delivered"]:
        raise typer.Exit(1)


@app.command("deliveries")
def deliveries(
    stream_id: str = typer.Argument(..., help="The stream (stm_...)."),
    limit: int = typer.Option(20, min=1, max=streams.RECENT_DELIVERIES, help="How many attempts."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line instead of a table."),
) -> None:
    """The stream's latest delivery attempts, newest first."""
    db = database()
    stream = _stream(db, stream_id)
    rows = streams.recent_deliveries(db.for_account(stream.account_id), stream.account_id, stream.id, limit)
    if as_json:
        for row in rows:
            print(_json(row))
        return
    table = Table(box=None, header_style="bold")
    for column in ("at", "event", "attempt", "status", "ms", "error"):
        table.add_column(column, no_wrap=column != "error")
    for r in rows:
        table.add_row(
            _json(r["at"]).strip('"'), r["event_id"], str(r["attempt"]), str(r["status_code"] or "-"),
            str(r["duration_ms"]), r["error"] or "",
        )  # fmt: skip
    Console(width=None if sys.stdout.isatty() else 240).print(table)
