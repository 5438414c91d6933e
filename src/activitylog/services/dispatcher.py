"""The dispatcher: delivers a sending broadcast to its audience minus suppressed and unsubscribed addresses.

Every recipient is claimed (a ``deliveries`` row inserted) before its message goes out, so two dispatchers
can never send one address twice, and a restart resumes where it stopped. Per-recipient results are
bookkeeping; the log gets one entry when the broadcast ends ``sent`` with its counts, by
``system:dispatcher``. A pause is honoured between batches of ``BATCH`` messages.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Row, Table, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from activitylog.db.base import Database
from activitylog.db.models import (
    Broadcast,
    BroadcastStatus,
    Contact,
    Delivery,
    DeliveryEvent,
    Segment,
    Suppression,
)
from activitylog.log.record import Actor, RequestContext
from activitylog.services.broadcasts import LIFECYCLE, advance
from activitylog.services.mailer import Mailer, compose
from activitylog.services.uow import UnitOfWork

DISPATCHER = Actor(type="system", id="dispatcher", name="activitylog dispatcher")
STALE_CLAIM = timedelta(minutes=10)
BATCH = 10  # recipients per claim; a pause is seen within this many messages
YIELD_SECONDS = 0.01  # between batches: the API's writers take the write lock meanwhile
_deliveries = cast(Table, Delivery.__table__)
_CONDITION_COLUMNS = (Contact.email, Contact.first_name, Contact.last_name, Contact.status)
_ContactRow = Row[str, str | None, str | None, str]  # what a condition tests: _CONDITION_COLUMNS
_STATUS = select(Broadcast.status).where(
    Broadcast.account_id == bindparam("a"), Broadcast.id == bindparam("id")
)
# A batch's outcomes, by broadcast (``a``, ``b``): the sent ones at once, each failure with its error.
_SETTLE = update(_deliveries).where(
    _deliveries.c.account_id == bindparam("a"), _deliveries.c.broadcast_id == bindparam("b")
)
_SENT = _SETTLE.where(_deliveries.c.email.in_(bindparam("emails", expanding=True))).values(
    status="sent", error=None, sent_at=bindparam("at")
)
_FAIL = _SETTLE.where(_deliveries.c.email == bindparam("e")).values(status="failed", error=bindparam("error"))


def _matches(contact: _ContactRow, condition: dict[str, object], engaged: set[str]) -> bool:
    field, op, value = condition["field"], condition["op"], condition["value"]
    if field == "engaged_within_days":
        return contact.email in engaged
    text = str(getattr(contact, str(field)) or "").lower()
    wanted = str(value).lower()
    return {
        "equals": text == wanted,
        "not_equals": text != wanted,
        "contains": wanted in text,
        "ends_with": text.endswith(wanted),
    }.get(str(op), False)


def audience(db: Database, broadcast: Broadcast, now: datetime) -> tuple[list[str], int]:
    """Subscribed contacts of the list (narrowed by the segment's conditions), minus suppressed addresses.
    Returns the addresses, and how many the suppression list removed."""
    with db.reader() as session:
        conditions: list[dict[str, object]] = []
        list_id = broadcast.list_id
        if broadcast.segment_id:
            segment = session.get(Segment, broadcast.segment_id)
            if segment is None:
                return [], 0
            list_id, conditions = segment.list_id, segment.conditions
        # The columns a condition can test, not ORM objects: every dispatch (a resumed send too) reads the
        # whole audience, and 20,000 instances cost ~280-300 ms of CPU against 50-60 for these rows.
        contacts = session.execute(
            select(*_CONDITION_COLUMNS).where(
                Contact.account_id == broadcast.account_id,
                Contact.list_id == list_id,
                Contact.status == "subscribed",
            )
        ).all()
        engaged: set[str] = set()
        days = [int(str(c["value"])) for c in conditions if c["field"] == "engaged_within_days"]
        if days:
            engaged = set(
                session.scalars(
                    select(DeliveryEvent.email).where(
                        DeliveryEvent.account_id == broadcast.account_id,
                        DeliveryEvent.type == "delivered",
                        DeliveryEvent.received_at >= now - timedelta(days=min(days)),
                    )
                )
            )
        suppressed = set(
            session.scalars(select(Suppression.email).where(Suppression.account_id == broadcast.account_id))
        )
    wanted = sorted({c.email for c in contacts if all(_matches(c, cond, engaged) for cond in conditions)})
    kept = [email for email in wanted if email not in suppressed]
    return kept, len(wanted) - len(kept)


def _claim(db: Database, broadcast: Broadcast, emails: list[str], now: datetime) -> list[str] | None:
    """Claim a batch of recipients in one short transaction; returns those nobody had claimed yet (the rest
    were sent before, or are being sent by another dispatcher), or None if the broadcast is no longer
    sending (paused or deleted meanwhile: the transaction that would claim reads it first)."""
    rows = [
        {
            "account_id": broadcast.account_id,
            "broadcast_id": broadcast.id,
            "email": email,
            "status": "sending",
            "sent_at": now,
        }
        for email in emails
    ]
    dialect = postgresql if db.dialect == "postgresql" else sqlite
    statement = dialect.insert(_deliveries).on_conflict_do_nothing().returning(_deliveries.c.email)
    with db.writer() as session:
        status = session.execute(
            _STATUS, {"a": broadcast.account_id, "id": broadcast.id}
        ).scalar_one_or_none()
        if status != BroadcastStatus.SENDING:
            return None
        claimed = {email for (email,) in session.execute(statement, rows)} if rows else set()
        session.commit()
    return [email for email in emails if email in claimed]


def _settle(db: Database, broadcast: Broadcast, results: dict[str, str | None]) -> None:
    """Record a batch's outcomes (``None``: sent; else the error) in one short transaction."""
    if not results:
        return
    key = {"a": broadcast.account_id, "b": broadcast.id}
    sent = [email for email, error in results.items() if error is None]
    failed = [{**key, "e": email, "error": error[:500]} for email, error in results.items() if error]
    with db.writer() as session:  # two statements, not a row read and written back per recipient
        if sent:
            session.execute(_SENT, {**key, "emails": sent, "at": datetime.now(UTC)})
        if failed:
            session.execute(_FAIL, failed)
        session.commit()


def _claimed(db: Database, broadcast: Broadcast) -> set[str]:
    """The recipients claimed before this run (sent, failed, or being sent by another dispatcher)."""
    with db.reader() as session:
        return set(
            session.scalars(
                select(Delivery.email).where(
                    Delivery.account_id == broadcast.account_id, Delivery.broadcast_id == broadcast.id
                )
            )
        )


def dispatch(
    db: Database, broadcast: Broadcast, mailer: Mailer, now: datetime, stop: threading.Event | None = None
) -> int:
    """Send what is left of one broadcast; returns how many messages this call sent.

    Recipients go out in batches of ``BATCH``: one transaction claims a batch, the messages go out with no
    transaction open, one transaction settles it, and the dispatcher pauses ``YIELD_SECONDS`` before the
    next — so it holds the database (SQLite's one write lock above all) for two short commits per batch,
    not two per message, and the API's own writes get their turn in between. A pause or a delete is seen
    before each batch, and so is ``stop`` (the worker shutting down): the next run resumes from the claims,
    with the recipients left (a resumed send of a big list does not walk the claimed ones again, ten at a
    time; a claim made meanwhile by another dispatcher is still refused by the claim itself)."""
    db = db.for_account(broadcast.account_id)
    targets, suppressed = audience(db, broadcast, now)
    claimed = _claimed(db, broadcast)
    left = [email for email in targets if email not in claimed]
    sent = 0
    for start in range(0, len(left), BATCH):
        if stop is not None and stop.is_set():
            return sent
        batch = _claim(db, broadcast, left[start : start + BATCH], datetime.now(UTC))
        if batch is None:
            return sent  # paused (or deleted) meanwhile
        results: dict[str, str | None] = {}
        for email in batch:
            try:
                mailer.send(compose(broadcast, email))
            except Exception as exc:  # a refused recipient or a relay error: recorded, the rest goes on
                results[email] = f"{type(exc).__name__}: {exc}"
            else:
                results[email] = None
                sent += 1
        _settle(db, broadcast, results)
        time.sleep(YIELD_SECONDS)
    _finish(db, broadcast.account_id, broadcast.id, len(targets), suppressed)
    return sent


def _finish(db: Database, account_id: str, broadcast_id: str, recipients: int, suppressed: int) -> None:
    """Mark the broadcast sent once every recipient is settled (stale claims of a crashed dispatcher fail)."""
    with UnitOfWork(db, account_id=account_id, actor=DISPATCHER, context=RequestContext()) as uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        if broadcast.status not in LIFECYCLE["finish"].sources:
            return
        counts = dict(
            uow.session.execute(
                select(Delivery.status, func.count())
                .where(Delivery.account_id == account_id, Delivery.broadcast_id == broadcast_id)
                .group_by(Delivery.status)
            ).all()
        )
        if counts.get("sending"):
            stale = uow.session.scalars(
                select(Delivery).where(
                    Delivery.account_id == account_id,
                    Delivery.broadcast_id == broadcast_id,
                    Delivery.status == "sending",
                    Delivery.sent_at < datetime.now(UTC) - STALE_CLAIM,
                )
            ).all()
            if len(stale) < counts["sending"]:
                return  # another dispatcher is still sending
            for row in stale:
                row.status, row.error = "failed", "dispatcher stopped mid-send; not retried (at most once)"
            counts["failed"] = counts.get("failed", 0) + len(stale)
        advance(broadcast, "finish")
        broadcast.recipients = recipients
        broadcast.delivered = counts.get("sent", 0)
        broadcast.failed = counts.get("failed", 0)
        broadcast.suppressed = suppressed
        broadcast.finished_at = uow.clock()
        uow.record("broadcast.update", broadcast)
        uow.commit()


def sending(db: Database) -> list[Broadcast]:
    """Broadcasts still sending, in every account: a cross-account read; each is dispatched in its own."""
    with db.system().reader() as session:
        return list(session.scalars(select(Broadcast).where(Broadcast.status == BroadcastStatus.SENDING)))
