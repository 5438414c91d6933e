"""Broadcasts and their lifecycle: draft → scheduled → sending ⇄ paused → sent → archived.

:data:`LIFECYCLE` is the one table of which action a status allows and where it leads; the services below, the
scheduler, the dispatcher, the reputation rules, the dashboard and the demo all ask it. Each transition is
its own action in the log (schedule, unschedule, send, pause, resume, archive; the dispatcher's finish is an
update with the counts); an action the current status does not allow is a 409 that says why and what to do
instead, and leaves no entry.

What was sent to whom is never lost: once a broadcast has gone out to anyone, its delivery records keep it, so
it cannot be deleted. It is archived instead, which releases its list or segment (the entry records which one
it was) so that they can be deleted in turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activitylog.db.base import Database
from activitylog.db.models import Broadcast, BroadcastStatus, Delivery, MailingList, Segment
from activitylog.errors import Conflict, InvalidInput
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork

S = BroadcastStatus


@dataclass(frozen=True)
class Step:
    """One lifecycle action: the statuses it may start from (in lifecycle order), and the status it leaves
    (None: unchanged)."""

    sources: tuple[BroadcastStatus, ...]
    to: BroadcastStatus | None
    done: str  # "a sent broadcast cannot be <done>"


LIFECYCLE: dict[str, Step] = {
    "update": Step((S.DRAFT, S.SCHEDULED, S.PAUSED), None, "edited"),
    # ... and only while nothing was delivered: see delete_broadcast
    "delete": Step((S.DRAFT, S.SCHEDULED, S.PAUSED), None, "deleted"),
    "schedule": Step((S.DRAFT, S.SCHEDULED), S.SCHEDULED, "scheduled"),
    "unschedule": Step((S.SCHEDULED,), S.DRAFT, "unscheduled"),
    "send": Step((S.DRAFT, S.SCHEDULED), S.SENDING, "sent"),
    "pause": Step((S.SENDING,), S.PAUSED, "paused"),
    "resume": Step((S.PAUSED,), S.SENDING, "resumed"),
    "finish": Step((S.SENDING,), S.SENT, "finished"),  # the dispatcher, every recipient settled
    "archive": Step((S.PAUSED, S.SENT), S.ARCHIVED, "archived"),
}
# Actions a person asks for (the dispatcher's finish is not one of them).
USER_ACTIONS = tuple(a for a in LIFECYCLE if a != "finish")

_KEPT = "its delivery records say who was sent what, so it is kept: archive it instead"
_HINTS: dict[tuple[str, str], str] = {
    ("update", S.SENDING): "pause it first",
    ("update", S.SENT): "it stays as it was sent; create a new broadcast to send something else",
    ("update", S.ARCHIVED): "it stays as it was sent; create a new broadcast to send something else",
    ("delete", S.SENDING): "pause it, then archive it; what it sent stays recorded",
    ("delete", S.SENT): _KEPT + " (archiving releases its list or segment, which can then be deleted)",
    ("delete", S.ARCHIVED): "it is kept for its delivery records; its list or segment is already released",
    ("schedule", S.SENDING): "it is already sending",
    ("schedule", S.PAUSED): "resume it instead",
    ("schedule", S.SENT): "create a new broadcast to send again",
    ("schedule", S.ARCHIVED): "create a new broadcast to send again",
    ("send", S.SENDING): "it is already sending",
    ("send", S.PAUSED): "resume it instead",
    ("send", S.SENT): "create a new broadcast to send again",
    ("send", S.ARCHIVED): "create a new broadcast to send again",
    ("archive", S.DRAFT): "nothing was sent yet: delete it instead",
    ("archive", S.SCHEDULED): "nothing was sent yet: unschedule or delete it instead",
    ("archive", S.SENDING): "pause it first",
    ("archive", S.ARCHIVED): "it is archived already",
}


def refusal(action: str, status: str) -> str:
    """Why ``action`` cannot be done to a broadcast in ``status``, and what to do instead."""
    step = LIFECYCLE[action]
    hint = _HINTS.get((action, status))  # a StrEnum member hashes as its text
    if hint is None:
        hint = "only a " + " or ".join(step.sources) + f" broadcast can be {step.done}"
    return f"a {status} broadcast cannot be {step.done}: {hint}"


def allowed(status: str, *, delivered: bool = False) -> frozenset[str]:
    """The actions a person may take on a broadcast in ``status``; ``delivered``: it went out to anyone."""
    return frozenset(
        a for a in USER_ACTIONS if status in LIFECYCLE[a].sources and not (a == "delete" and delivered)
    )


def _delivered(session: Session, account_id: str, broadcast_id: str) -> int:
    return int(
        session.execute(
            select(func.count()).where(
                Delivery.account_id == account_id, Delivery.broadcast_id == broadcast_id
            )
        ).scalar_one()
    )


@dataclass(frozen=True)
class Offer:
    """What a stored broadcast allows now, and why not editing or deleting it (what the dashboard shows)."""

    actions: frozenset[str]
    notes: tuple[str, ...]


def offer(db: Database, account_id: str, broadcast: Broadcast) -> Offer:
    delivered = 0
    if "delete" in allowed(broadcast.status):  # only then does it matter whether anything went out
        with db.for_account(account_id).reader() as session:
            delivered = _delivered(session, account_id, broadcast.id)
    actions = allowed(broadcast.status, delivered=delivered > 0)
    notes = [refusal(a, broadcast.status) for a in ("update", "delete") if not can(broadcast, a)]
    if delivered:
        notes.append(_kept(broadcast.id, delivered))
    return Offer(actions, tuple(n[0].upper() + n[1:] + "." for n in notes))


def _kept(broadcast_id: str, delivered: int) -> str:
    plural = "s" if delivered != 1 else ""
    return f"broadcast {broadcast_id} has already gone out to {delivered} recipient{plural}: {_KEPT}"


def can(broadcast: Broadcast, action: str) -> bool:
    return broadcast.status in LIFECYCLE[action].sources


def require(broadcast: Broadcast, action: str) -> None:
    """Refuse (409) an action the broadcast's status does not allow, saying why."""
    if not can(broadcast, action):
        raise Conflict(refusal(action, broadcast.status))


def advance(broadcast: Broadcast, action: str) -> None:
    """Move the broadcast along ``action``'s transition (409 if its status does not allow it)."""
    require(broadcast, action)
    to = LIFECYCLE[action].to
    if to is not None:
        broadcast.status = to


def holding(uow: UnitOfWork, column: Any, audience_id: str, what: str) -> Conflict | None:
    """Why the list or segment ``audience_id`` cannot be deleted while broadcasts use it, by status, and
    what to do about each; None when none does (an archived broadcast has released it)."""
    counts = dict(
        uow.session.execute(
            select(Broadcast.status, func.count())
            .where(Broadcast.account_id == uow.account_id, column == audience_id)
            .group_by(Broadcast.status)
        ).all()
    )
    if not counts:
        return None
    total = sum(counts.values())
    by_status = ", ".join(f"{counts[s]} {s}" for s in S if s in counts)
    return Conflict(
        f"{what} {audience_id} is used by {total} broadcast{'s' if total != 1 else ''} ({by_status}): "
        "archive those that went out (archiving releases their audience), and delete the others or "
        f"give them another {what}"
    )


def _check_audience(uow: UnitOfWork, values: dict[str, Any]) -> None:
    if values.get("list_id"):
        uow.get(MailingList, values["list_id"], what="list")
    if values.get("segment_id"):
        uow.get(Segment, values["segment_id"], what="segment")


def create_broadcast(uow: UnitOfWork, values: dict[str, Any]) -> Broadcast:
    with uow:
        _check_audience(uow, values)
        broadcast = crud.create(uow, Broadcast, "brd", {**values, "status": S.DRAFT})
        uow.commit()
    return broadcast


def update_broadcast(uow: UnitOfWork, broadcast_id: str, values: dict[str, Any]) -> Broadcast:
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        require(broadcast, "update")
        _check_audience(uow, values)
        if values.get("list_id"):
            values = {**values, "segment_id": None}
        elif values.get("segment_id"):
            values = {**values, "list_id": None}
        crud.update(uow, broadcast, values)
        uow.commit()
    return broadcast


def delete_broadcast(uow: UnitOfWork, broadcast_id: str) -> None:
    """Only a broadcast that went out to nobody can be deleted; the others are archived (see the module)."""
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        require(broadcast, "delete")
        delivered = _delivered(uow.session, uow.account_id, broadcast.id)
        if delivered:
            raise Conflict(_kept(broadcast.id, delivered))
        crud.delete(uow, broadcast)
        uow.commit()


def _transition(uow: UnitOfWork, broadcast_id: str, action: str, values: dict[str, Any]) -> Broadcast:
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        advance(broadcast, action)
        for key, value in values.items():
            setattr(broadcast, key, value)
        uow.record(f"broadcast.{action}", broadcast)
        uow.commit()
    return broadcast


def schedule(uow: UnitOfWork, broadcast_id: str, send_at: datetime) -> Broadcast:
    if send_at <= uow.clock():
        raise InvalidInput("send_at", "must be in the future")
    values = {"send_at": send_at, "scheduled_by": uow.actor.ref}
    return _transition(uow, broadcast_id, "schedule", values)


def unschedule(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "unschedule", {"send_at": None, "scheduled_by": None})


def send(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "send", {"send_at": None, "sent_at": uow.clock()})


def pause(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "pause", {})


def resume(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "resume", {})


def archive(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    """Keep a broadcast that went out (or stop a paused one for good) with its delivery records, and
    release its list or segment: the entry's ``list_id``/``segment_id`` change says which one it was."""
    return _transition(uow, broadcast_id, "archive", {"list_id": None, "segment_id": None})


def finish(uow: UnitOfWork, broadcast: Broadcast, counts: dict[str, int]) -> None:
    """The dispatcher's last step, inside its unit of work: every recipient settled, the counts recorded."""
    advance(broadcast, "finish")
    for key in ("recipients", "delivered", "failed", "suppressed"):
        setattr(broadcast, key, counts.get(key, 0))
    broadcast.finished_at = uow.clock()
    uow.record("broadcast.update", broadcast)
