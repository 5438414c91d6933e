"""The scheduler: a scheduled broadcast whose time has come starts sending, logged as ``broadcast.send`` by
``system:scheduler`` on behalf of whoever scheduled it.

Claiming is a locked re-read inside the unit of work (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's
write lock from ``BEGIN IMMEDIATE``): of two workers, the second finds the broadcast already sending and
does nothing, so a broadcast is never started twice. A schedule that came due while no worker ran is
started when one comes back, and its entry says how late.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from activitylog.db.base import Database
from activitylog.db.models import Broadcast, BroadcastStatus
from activitylog.log.record import Actor, RequestContext
from activitylog.services.broadcasts import advance
from activitylog.services.uow import UnitOfWork

LATE_AFTER = timedelta(seconds=5)


def due(db: Database, now: datetime) -> list[tuple[str, str]]:
    """Due broadcasts of every account: a cross-account read; each start then runs in its own account."""
    with db.system().reader() as session:
        rows = session.execute(
            select(Broadcast.account_id, Broadcast.id).where(
                Broadcast.status == BroadcastStatus.SCHEDULED, Broadcast.send_at <= now
            )
        ).all()
    return [(r.account_id, r.id) for r in rows]


def start_due(db: Database, now: datetime) -> list[str]:
    """Start every due broadcast this worker can claim; returns the ids it started."""
    started = []
    for account_id, broadcast_id in due(db, now):
        actor = Actor(type="system", id="scheduler", name="activitylog scheduler")
        with UnitOfWork(db, account_id=account_id, actor=actor, context=RequestContext()) as uow:
            broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
            if (
                broadcast.status != BroadcastStatus.SCHEDULED
                or broadcast.send_at is None
                or broadcast.send_at > now
            ):
                continue  # another worker took it, or it was unscheduled meanwhile
            late = now - broadcast.send_at
            on_behalf = Actor(actor.type, actor.id, actor.name, on_behalf_of=broadcast.scheduled_by)
            advance(broadcast, "send")
            broadcast.sent_at = now
            extra = (
                {"late_by_seconds": {"from": None, "to": round(late.total_seconds(), 3)}}
                if late > LATE_AFTER
                else None
            )
            uow.record("broadcast.send", broadcast, extra=extra, actor=on_behalf)
            uow.commit()
            started.append(broadcast_id)
    return started
