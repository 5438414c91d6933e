"""The dispatcher: delivers a sending broadcast to its audience minus suppressed and unsubscribed addresses.

Every recipient is claimed (a ``deliveries`` row inserted) before its message goes out, so two dispatchers
can never send one address twice, and a restart resumes where it stopped. Per-recipient results are
bookkeeping; the log gets one entry when the broadcast ends ``sent`` with its counts, by
``system:dispatcher``. A pause is honoured between messages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from activitylog.db.base import Database
from activitylog.db.models import Broadcast, Contact, Delivery, DeliveryEvent, Segment, Suppression
from activitylog.log.record import Actor, RequestContext
from activitylog.services.mailer import Mailer, compose
from activitylog.services.uow import UnitOfWork

DISPATCHER = Actor(type="system", id="dispatcher", name="activitylog dispatcher")
STALE_CLAIM = timedelta(minutes=10)
CHECK_STATUS_EVERY = 10


def _matches(contact: Contact, condition: dict[str, object], engaged: set[str]) -> bool:
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
        contacts = session.scalars(
            select(Contact).where(
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


def _claim(db: Database, broadcast: Broadcast, email: str, now: datetime) -> bool:
    with db.writer() as session:
        session.add(
            Delivery(
                account_id=broadcast.account_id,
                broadcast_id=broadcast.id,
                email=email,
                status="sending",
                sent_at=now,
            )
        )
        try:
            session.commit()
        except IntegrityError:
            return False
    return True


def _settle(db: Database, broadcast: Broadcast, email: str, error: str | None) -> None:
    with db.writer() as session:
        row = session.get(Delivery, (broadcast.account_id, broadcast.id, email))
        assert row is not None
        row.status, row.error, row.sent_at = (
            ("failed", error[:500], row.sent_at) if error else ("sent", None, datetime.now(UTC))
        )
        session.commit()


def _status(db: Database, broadcast_id: str) -> str | None:
    with db.reader() as session:
        return session.execute(
            select(Broadcast.status).where(Broadcast.id == broadcast_id)
        ).scalar_one_or_none()


def dispatch(db: Database, broadcast: Broadcast, mailer: Mailer, now: datetime) -> int:
    """Send what is left of one broadcast; returns how many messages this call sent."""
    db = db.for_account(broadcast.account_id)
    targets, suppressed = audience(db, broadcast, now)
    sent = 0
    for n, email in enumerate(targets):
        if n % CHECK_STATUS_EVERY == 0 and _status(db, broadcast.id) != "sending":
            return sent  # paused (or deleted) meanwhile
        if not _claim(db, broadcast, email, datetime.now(UTC)):
            continue  # already sent, or being sent by another dispatcher
        try:
            mailer.send(compose(broadcast, email))
        except Exception as exc:  # a refused recipient or a relay error: recorded, the rest goes on
            _settle(db, broadcast, email, f"{type(exc).__name__}: {exc}")
        else:
            _settle(db, broadcast, email, None)
            sent += 1
    _finish(db, broadcast.account_id, broadcast.id, len(targets), suppressed)
    return sent


def _finish(db: Database, account_id: str, broadcast_id: str, recipients: int, suppressed: int) -> None:
    """Mark the broadcast sent once every recipient is settled (stale claims of a crashed dispatcher fail)."""
    with UnitOfWork(db, account_id=account_id, actor=DISPATCHER, context=RequestContext()) as uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        if broadcast.status != "sending":
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
        broadcast.status = "sent"
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
        return list(session.scalars(select(Broadcast).where(Broadcast.status == "sending")))
