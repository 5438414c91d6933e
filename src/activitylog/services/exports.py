"""Reading the log is audited too: every export is an ``activity_log.export`` entry with its filter."""

from __future__ import annotations

from activitylog.log.query import ActivityFilter
from activitylog.log.record import ResourceRef
from activitylog.services.uow import UnitOfWork


def log_export(uow: UnitOfWork, f: ActivityFilter, fmt: str) -> int:
    """Log the export; its seq is the slice's ``as_of``, so the export and its manifest agree exactly."""
    with uow:
        target = ResourceRef(type="activity_log", id=uow.account_id, name="Activity log")
        changes = {
            "filter": {"from": None, "to": dict(sorted(f.raw.items()))},
            "format": {"from": None, "to": fmt},
        }
        entry = uow.record("activity_log.export", target, changes)
        uow.commit()
    assert entry is not None
    return int(entry["seq"])
