"""Reading the log is audited too: every export is an ``activity_log.export`` entry with its filter."""

from __future__ import annotations

from activitylog.log.query import ActivityFilter
from activitylog.log.record import ResourceRef
from activitylog.services.uow import UnitOfWork


def log_export(uow: UnitOfWork, f: ActivityFilter, fmt: str, as_of: int | None = None) -> int:
    """Log the export; its seq is the slice's ``as_of``, so the export and its manifest agree exactly.
    An export taken as of an earlier tree (``as_of``: the activity page's downloads, all against the
    checkpoint the page showed) says so in its entry."""
    with uow:
        target = ResourceRef(type="activity_log", id=uow.account_id, name="Activity log")
        changes = {
            "filter": {"from": None, "to": dict(sorted(f.raw.items()))},
            "format": {"from": None, "to": fmt},
        }
        if as_of is not None:
            changes["as_of_seq"] = {"from": None, "to": as_of}
        entry = uow.record("activity_log.export", target, changes)
        uow.commit()
    assert entry is not None
    return int(entry["seq"])
