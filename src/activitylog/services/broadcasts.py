"""Broadcasts and their lifecycle: draft → scheduled → sending ⇄ paused → sent.

Each transition is its own action in the log (schedule, unschedule, send, pause, resume); an action that the
current status does not allow is a 409, and leaves no entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from activitylog.db.models import Broadcast, MailingList, Segment
from activitylog.errors import Conflict, InvalidInput
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork

EDITABLE = frozenset({"draft", "scheduled", "paused"})
DELETABLE = frozenset({"draft", "scheduled", "paused", "sent"})


def _check_audience(uow: UnitOfWork, values: dict[str, Any]) -> None:
    if values.get("list_id"):
        uow.get(MailingList, values["list_id"], what="list")
    if values.get("segment_id"):
        uow.get(Segment, values["segment_id"], what="segment")


def create_broadcast(uow: UnitOfWork, values: dict[str, Any]) -> Broadcast:
    with uow:
        _check_audience(uow, values)
        broadcast = crud.create(uow, Broadcast, "brd", {**values, "status": "draft"})
        uow.commit()
    return broadcast


def update_broadcast(uow: UnitOfWork, broadcast_id: str, values: dict[str, Any]) -> Broadcast:
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        _require(broadcast, EDITABLE, "edited")
        _check_audience(uow, values)
        if values.get("list_id"):
            values = {**values, "segment_id": None}
        elif values.get("segment_id"):
            values = {**values, "list_id": None}
        crud.update(uow, broadcast, values)
        uow.commit()
    return broadcast


def delete_broadcast(uow: UnitOfWork, broadcast_id: str) -> None:
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        _require(broadcast, DELETABLE, "deleted")
        crud.delete(uow, broadcast)
        uow.commit()


def _require(broadcast: Broadcast, allowed: frozenset[str], doing: str) -> None:
    if broadcast.status not in allowed:
        raise Conflict(f"a {broadcast.status} broadcast cannot be {doing}")


def _transition(
    uow: UnitOfWork, broadcast_id: str, verb: str, allowed: frozenset[str], values: dict[str, Any]
) -> Broadcast:
    with uow:
        broadcast = uow.get(Broadcast, broadcast_id, what="broadcast")
        _require(broadcast, allowed, {"send": "sent"}.get(verb, verb + "d"))
        for key, value in values.items():
            setattr(broadcast, key, value)
        uow.record(f"broadcast.{verb}", broadcast)
        uow.commit()
    return broadcast


def schedule(uow: UnitOfWork, broadcast_id: str, send_at: datetime) -> Broadcast:
    if send_at <= uow.clock():
        raise InvalidInput("send_at", "must be in the future")
    values = {"status": "scheduled", "send_at": send_at, "scheduled_by": uow.actor.ref}
    return _transition(uow, broadcast_id, "schedule", frozenset({"draft", "scheduled"}), values)


def unschedule(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    values = {"status": "draft", "send_at": None, "scheduled_by": None}
    return _transition(uow, broadcast_id, "unschedule", frozenset({"scheduled"}), values)


def send(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    values = {"status": "sending", "send_at": None, "sent_at": uow.clock()}
    return _transition(uow, broadcast_id, "send", frozenset({"draft", "scheduled"}), values)


def pause(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "pause", frozenset({"sending"}), {"status": "paused"})


def resume(uow: UnitOfWork, broadcast_id: str) -> Broadcast:
    return _transition(uow, broadcast_id, "resume", frozenset({"paused"}), {"status": "sending"})
