"""Segments: a list narrowed by conditions (evaluated by the dispatcher when a broadcast is sent)."""

from __future__ import annotations

from typing import Any

from activitylog.db.models import Broadcast, MailingList, Segment
from activitylog.services import broadcasts, crud
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
        held = broadcasts.holding(uow, Broadcast.segment_id, segment.id, "segment")
        if held is not None:
            raise held
        crud.delete(uow, segment)
        uow.commit()
