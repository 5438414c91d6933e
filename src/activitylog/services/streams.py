"""Streams: the account's log delivered to a webhook or a NATS JetStream subject, complete and in order.

A stream is configuration the account owns (every change is an entry, resource type ``stream``); where its
delivery stands is a :class:`~activitylog.db.models.StreamCursor` that the relay (``workers/streams``)
moves. The account moves that cursor itself only through create (the first event is the create entry, or
``from_seq``), replay and resume — each in the transaction of its entry — and bumps the cursor's
generation, so a delivery in flight when the cursor was moved cannot move it back.

Secrets: an HMAC stream's ``whsec_…`` secret is shown once, at creation, and kept sealed (the relay needs it
to sign); an Ed25519 stream keeps its private key sealed and shows its ``whpk_…`` public key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Table, delete, insert, select, update

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, ChainHead, Stream, StreamCursor, StreamDelivery
from activitylog.errors import Conflict, InvalidInput
from activitylog.ids import new_id
from activitylog.log.filters import parse_filter_object
from activitylog.log.query import ActivityFilter
from activitylog.relay.events import PURGED, skipped_range
from activitylog.services import crud, listing
from activitylog.services.sealing import seal, unseal
from activitylog.services.stream_targets import check_subject, check_url
from activitylog.services.uow import UnitOfWork

TYPES = ("webhook", "nats")
FORMATS = ("json", "ocsf")
SIGNINGS = ("hmac", "ed25519")
SECRET_FIELD = "stream_secret"  # noqa: S105 (the sealing's associated data: a value moved elsewhere does not open)
SECRET_BYTES = 24  # Standard Webhooks: secrets of 24 to 64 bytes
RECENT_DELIVERIES = 100
_cursors = cast(Table, StreamCursor.__table__)
_deliveries = cast(Table, StreamDelivery.__table__)


@dataclass(frozen=True)
class Created:
    stream: Stream
    secret: str | None  # the whsec_… secret, shown only now


def filter_of(raw: dict[str, Any] | None) -> tuple[dict[str, str], ActivityFilter]:
    """A stream's filter: the activity filters of ``GET /api/v1/activity`` as an object, parsed by the
    log's own parser (the same names, values and errors); a list value is the comma-separated OR."""
    return parse_filter_object(raw)


def hmac_key(secret: str) -> bytes:
    """The HMAC key a ``whsec_…`` secret stands for (Standard Webhooks: the base64 after the prefix)."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def _new_hmac_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


def _new_ed25519() -> tuple[str, str]:
    """A sealed-to-be private seed and the ``whpk_…`` public key."""
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whsk_" + base64.b64encode(seed).decode(), "whpk_" + base64.b64encode(public).decode()


def opened_secret(stream: Stream, settings: Settings | None = None) -> str | None:
    return unseal(stream.secret, SECRET_FIELD, settings) if stream.secret else None


def _destination(values: dict[str, Any], kind: str, settings: Settings) -> dict[str, Any]:
    """The URL or subject the type needs, checked; the other one refused."""
    if kind == "webhook":
        if values.get("subject"):
            raise InvalidInput("subject", "only nats streams take a subject")
        if not values.get("url"):
            raise InvalidInput("url", "a webhook stream needs a url")
        return {"url": check_url(values["url"], allow_private=settings.stream_allow_private)}
    if values.get("url"):
        raise InvalidInput("url", "only webhook streams take a url")
    if not values.get("subject"):
        raise InvalidInput("subject", "a nats stream needs a subject")
    return {"subject": check_subject(values["subject"])}


def _head_seq(uow: UnitOfWork) -> int:
    seq = uow.session.execute(
        select(ChainHead.seq).where(ChainHead.account_id == uow.account_id)
    ).scalar_one_or_none()
    return int(seq or 0)


def create_stream(uow: UnitOfWork, values: dict[str, Any], settings: Settings) -> Created:
    kind = values["type"]
    row: dict[str, Any] = {
        "name": values["name"],
        "type": kind,
        "format": values.get("format") or "json",
        "state": "active",
        "url": None,
        "subject": None,
        "signing": None,
        "secret": None,
        "public_key": None,
        **_destination(values, kind, settings),
    }
    row["filter"], _ = filter_of(values.get("filter"))
    shown: str | None = None
    signing = values.get("signing")
    if kind == "webhook":
        row["signing"] = signing or "hmac"
        if row["signing"] == "hmac":
            shown = _new_hmac_secret()
            row["secret"] = seal(shown, SECRET_FIELD, settings)
        else:
            private, row["public_key"] = _new_ed25519()
            row["secret"] = seal(private, SECRET_FIELD, settings)
    elif signing:
        raise InvalidInput(
            "signing", "only webhook streams are signed (JetStream de-duplicates by Nats-Msg-Id)"
        )
    from_seq = values.get("from_seq")
    with uow:
        head = _head_seq(uow)
        if from_seq is not None and not 1 <= from_seq <= head:
            raise InvalidInput("from_seq", f"must be 1..{head} (the log's size)")
        stream = crud.create(uow, Stream, "stm", row)
        created = uow.entries[-1]["seq"]
        uow.add(
            StreamCursor(
                account_id=uow.account_id,
                stream_id=stream.id,
                delivered_seq=(from_seq or created) - 1,
                generation=0,
                attempts=0,
                checkpoint_seq=(from_seq or created) - 1,  # checkpoints cover what the stream carried
                checkpoint_at=uow.clock(),
            )
        )
        uow.commit()
    return Created(stream, shown)


def update_stream(uow: UnitOfWork, stream_id: str, values: dict[str, Any], settings: Settings) -> Stream:
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        changes = dict(values)
        if "url" in changes or "subject" in changes:
            merged = {"url": stream.url, "subject": stream.subject, **changes}
            changes.update(_destination(merged, stream.type, settings))
        if "filter" in changes:
            changes["filter"], _ = filter_of(changes["filter"])
        crud.update(uow, stream, changes)
        uow.commit()
    return stream


def delete_stream(uow: UnitOfWork, stream_id: str) -> None:
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        where = (StreamCursor.account_id == uow.account_id, StreamCursor.stream_id == stream.id)
        uow.session.execute(delete(_cursors).where(*where))
        uow.session.execute(
            delete(_deliveries).where(
                StreamDelivery.account_id == uow.account_id, StreamDelivery.stream_id == stream.id
            )
        )
        crud.delete(uow, stream)
        uow.commit()


def _cursor_moved(uow: UnitOfWork, stream: Stream, **values: Any) -> None:
    """Move the cursor as the account asked: a new generation, no retry pending, the lease released."""
    uow.session.execute(
        update(_cursors)
        .where(StreamCursor.account_id == uow.account_id, StreamCursor.stream_id == stream.id)
        .values(
            generation=StreamCursor.generation + 1,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            lease_owner=None,
            lease_until=None,
            **values,
        )
    )


def pause_stream(uow: UnitOfWork, stream_id: str) -> Stream:
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        if stream.state != "active":
            raise Conflict(f"stream {stream.id} is {stream.state}, not active")
        stream.state = "paused"
        uow.record("stream.pause", stream)
        uow.commit()
    return stream


def resume_stream(uow: UnitOfWork, stream_id: str) -> Stream:
    """A paused or disabled stream delivers again from where it stopped, retrying at once."""
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        if stream.state == "active":
            raise Conflict(f"stream {stream.id} is already active")
        stream.state = "active"
        _cursor_moved(uow, stream)
        uow.record("stream.resume", stream)
        uow.commit()
    return stream


def disable_stream(uow: UnitOfWork, stream_id: str, reason: str) -> Stream | None:
    """What a destination's 410 does (``uow``'s actor is ``system:streams``); None if not active."""
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        if stream.state != "active":
            return None
        stream.state = "disabled"
        uow.record("stream.disable", stream, extra={"reason": {"from": None, "to": reason}})
        uow.commit()
    return stream


def replay_stream(uow: UnitOfWork, stream_id: str, from_seq: int) -> Stream:
    """Deliver again from ``from_seq`` (the same event ids: a receiver de-duplicating by id keeps one)."""
    with uow:
        stream = uow.get(Stream, stream_id, what="stream")
        head = _head_seq(uow)
        if not 1 <= from_seq <= head:
            raise InvalidInput("from_seq", f"must be 1..{head} (the log's size)")
        cursor = uow.session.execute(
            select(StreamCursor.delivered_seq).where(
                StreamCursor.account_id == uow.account_id, StreamCursor.stream_id == stream.id
            )
        ).scalar_one()
        _cursor_moved(
            uow,
            stream,
            delivered_seq=from_seq - 1,
            pending_checkpoint=None,
            checkpoint_seq=from_seq - 1,
            checkpoint_at=uow.clock(),
        )
        uow.record("stream.replay", stream, {"next_seq": {"from": int(cursor) + 1, "to": from_seq}})
        uow.commit()
    return stream


# ---- reading ----
def _lag_seconds(db: Database, stream: Stream, cursor: StreamCursor, now: datetime) -> float:
    """How long the oldest entry the stream has not yet handled has waited (0 when caught up)."""
    with db.reader() as session:
        waiting = session.execute(
            select(ActivityEntry.occurred_at).where(
                ActivityEntry.account_id == stream.account_id, ActivityEntry.seq == cursor.delivered_seq + 1
            )
        ).scalar_one_or_none()
    if waiting is None:
        return 0.0
    return round(max(0.0, (now - waiting).total_seconds()), 3)


def shown_state(stream: Stream, cursor: StreamCursor | None) -> str:
    if stream.state != "active":
        return stream.state
    return "failing" if cursor is not None and cursor.attempts > 0 else "active"


def view(db: Database, stream: Stream, cursor: StreamCursor | None = None) -> dict[str, Any]:
    """The stream as the API shows it: its settings (never its secret) and where delivery stands."""
    if cursor is None:
        with db.reader() as session:
            cursor = session.get(StreamCursor, (stream.account_id, stream.id))
    now = datetime.now(UTC)
    out: dict[str, Any] = {
        "id": stream.id,
        "name": stream.name,
        "type": stream.type,
        "url": stream.url,
        "subject": stream.subject,
        "format": stream.format,
        "filter": stream.filter,
        "signing": stream.signing,
        "public_key": stream.public_key,
        "state": shown_state(stream, cursor),
        "created_at": stream.created_at,
        "delivered_seq": None,
        "lag_seconds": None,
        "last_error": None,
        "next_attempt_at": None,
        "delivered_at": None,
    }
    if cursor is not None:
        out.update(
            delivered_seq=cursor.delivered_seq,
            lag_seconds=_lag_seconds(db, stream, cursor, now),
            last_error=cursor.last_error,
            next_attempt_at=cursor.next_attempt_at,
            delivered_at=cursor.delivered_at,
        )
    return out


def views(db: Database, rows: list[Stream]) -> list[dict[str, Any]]:
    """Several of one account's streams as the API shows them, their cursors read in one query."""
    if not rows:
        return []
    with db.reader() as session:
        found = session.scalars(
            select(StreamCursor).where(
                StreamCursor.account_id == rows[0].account_id,
                StreamCursor.stream_id.in_([r.id for r in rows]),
            )
        ).all()
    by_id = {c.stream_id: c for c in found}
    return [view(db, r, by_id.get(r.id)) for r in rows]


def get_stream(db: Database, account_id: str, stream_id: str) -> Stream:
    stream: Stream = listing.one(db, Stream, account_id, stream_id, "stream")
    return stream


def recent_deliveries(
    db: Database, account_id: str, stream_id: str, limit: int = RECENT_DELIVERIES
) -> list[dict[str, Any]]:
    """The stream's latest delivery attempts, newest first."""
    get_stream(db, account_id, stream_id)
    with db.reader() as session:
        rows = session.scalars(
            select(StreamDelivery)
            .where(StreamDelivery.account_id == account_id, StreamDelivery.stream_id == stream_id)
            .order_by(StreamDelivery.at.desc(), StreamDelivery.id.desc())  # a batch's ids share a ms
            .limit(limit)
        ).all()
    return [
        {
            "event_id": r.event_id,
            "seq": r.seq,
            "attempt": r.attempt,
            "status_code": r.status_code,
            "error": r.error,
            "duration_ms": r.duration_ms,
            "at": r.at,
            **_skipped(r.event_id),
        }
        for r in rows
    ]


def _skipped(event_id: str) -> dict[str, Any]:
    """A purged range the stream stepped over says so: ``skipped: [from, to]``, ``reason: "purged"``."""
    span = skipped_range(event_id)
    return {} if span is None else {"skipped": span, "reason": PURGED}


def record_test(
    db: Database, stream: Stream, event_id: str, status: int | None, error: str | None, duration_ms: int
) -> None:
    """A test event's attempt, among the stream's deliveries (not an entry: it changes nothing)."""
    with db.writer() as session:
        session.execute(
            insert(_deliveries).values(
                account_id=stream.account_id,
                stream_id=stream.id,
                id=new_id("dlv"),
                event_id=event_id,
                seq=None,
                attempt=1,
                status_code=status,
                error=error,
                duration_ms=duration_ms,
                at=datetime.now(UTC),
            )
        )
        session.commit()
