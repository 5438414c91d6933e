"""Segments: a list narrowed by conditions (evaluated by the dispatcher when a broadcast is sent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from activitylog.db.models import Broadcast, MailingList, Segment
from activitylog.errors import Conflict
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork


def create_segment(uow: UnitOfWork, values: dict[str, Any]) -> Segment:
    with uow:
        uow.get(MailingList, values["list_id"], what="list")
        segment = crud.create(uow, Segment, "seg", values)
        uow.commit()
    return segment


def update_segment(uow: UnitOfWork, segment_id: str, values: dict[str, Any]) -> Segment:
    with uow:
        segment = uow.get(Segment, segment_id, what="segment")
        if "list_id" in values:
            uow.get(MailingList, values["list_id"], what="list")
        crud.update(uow, segment, values)
        uow.commit()
    return segment


def delete_segment(uow: UnitOfWork, segment_id: str) -> None:
    with uow:
        segment = uow.get(Segment, segment_id, what="segment")
        used = uow.session.execute(
            select(func.count()).where(
                Broadcast.account_id == uow.account_id, Broadcast.segment_id == segment.id
            )
        ).scalar_one()
        if used:
            raise Conflict(f"segment {segment.id} is used by {used} broadcasts")
        crud.delete(uow, segment)
        uow.commit()
