"""Alerts as rows: raising one (with its ``alert.raise`` entry, in one transaction), acknowledging one,
and reading them in the contract's shape."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activitylog import metrics
from activitylog.alerts.policy import ALL_KINDS
from activitylog.db.base import Database
from activitylog.db.models import Alert
from activitylog.errors import Conflict, InvalidInput
from activitylog.ids import new_id
from activitylog.log.record import Actor, RequestContext
from activitylog.services import listing
from activitylog.services.listing import decode_after, encode_after
from activitylog.services.uow import UnitOfWork

SYSTEM_ALERTS = Actor(type="system", id="alerts", name="activitylog alerts")
STATUSES = ("open", "acknowledged")
ALERTS_RAISED = metrics.counter("activitylog_alerts_raised", "Alerts raised, by kind", ["kind"])
for _kind in ALL_KINDS:  # every kind on /metrics from the start, at 0 until one is raised
    ALERTS_RAISED.labels(_kind)


@dataclass(frozen=True)
class Finding:
    """What a detector found, before it is an alert."""

    kind: str
    summary: str
    trigger_at: datetime
    seqs: list[int]
    figures: dict[str, Any] = field(default_factory=dict)
    actor: Actor | None = None
    ip: str | None = None
    dedup_key: str | None = None
    account_id: str | None = None
    """The account it is raised in, when not the one whose log it was found in (``signin.spray``)."""


def raise_alert(db: Database, account_id: str, finding: Finding) -> Alert | None:
    """Raise ``finding`` as an alert in ``account_id``: the row and its ``alert.raise`` entry in one
    transaction. None when the same finding (its ``dedup_key``) was raised already."""
    raised = raise_alerts(db, account_id, [finding])
    return raised[0] if raised else None


def raise_alerts(
    db: Database,
    account_id: str,
    findings: list[Finding],
    then: Callable[[Session, list[dict[str, Any]]], None] | None = None,
) -> list[Alert]:
    """Raise several findings of one account in one transaction (a detector's batch: one commit, not one
    per alert), each row with its ``alert.raise`` entry; those raised already (by ``dedup_key``, looked up
    in one query) are skipped. ``then`` writes more in the same transaction, given the session and the
    entries appended (the detectors move their cursor there). If another detector raised one meanwhile,
    each is tried on its own, and ``then`` runs in a transaction of its own."""
    if not findings and then is None:
        return []
    uow = UnitOfWork(db, account_id=account_id, actor=SYSTEM_ALERTS, context=RequestContext())
    with uow:
        taken = _taken(uow, [f.dedup_key for f in findings if f.dedup_key is not None])
        alerts = []
        for finding in findings:
            if finding.dedup_key is not None:
                if finding.dedup_key in taken:
                    continue
                taken.add(finding.dedup_key)  # the same finding twice in one batch: raised once
            alerts.append(_add(uow, finding))
        if then is not None:
            then(uow.session, uow.entries)
        try:
            uow.commit()
            conflict = False
        except Conflict:  # the unique dedup key: someone raised one of them first
            conflict = True
    if conflict:
        alerts = (
            [] if len(findings) == 1 else [a for f in findings for a in raise_alerts(db, account_id, [f])]
        )
        if then is not None:
            with db.for_account(account_id).writer() as session:
                then(session, [])
                session.commit()
        return alerts
    for alert in alerts:
        ALERTS_RAISED.labels(alert.kind).inc()
    return alerts


def _taken(uow: UnitOfWork, keys: list[str]) -> set[str]:
    """Which of ``keys`` the account's alerts have already."""
    taken: set[str] = set()
    for start in range(0, len(keys), 500):
        taken.update(
            uow.session.scalars(
                select(Alert.dedup_key).where(
                    Alert.account_id == uow.account_id, Alert.dedup_key.in_(keys[start : start + 500])
                )
            )
        )
    return taken


def _add(uow: UnitOfWork, finding: Finding) -> Alert:
    actor = finding.actor
    alert = Alert(
        id=new_id("alr"),
        account_id=uow.account_id,
        kind=finding.kind,
        status="open",
        raised_at=datetime.now(UTC),
        trigger_at=finding.trigger_at,
        actor_type=actor.type if actor else None,
        actor_id=actor.id if actor else None,
        actor_name=actor.name if actor else None,
        ip=finding.ip,
        summary=finding.summary[:500],
        figures=finding.figures,
        seqs=finding.seqs,
        dedup_key=finding.dedup_key,
    )
    uow.add(alert)
    uow.record("alert.raise", alert)
    return alert


def acknowledge(uow: UnitOfWork, alert_id: str) -> Alert:
    with uow:
        alert = uow.get(Alert, alert_id, what="alert")
        if alert.status == "acknowledged":
            raise Conflict(f"alert {alert_id} is already acknowledged")
        alert.status = "acknowledged"
        alert.acknowledged_at = uow.clock()
        alert.acknowledged_by = uow.actor.ref
        uow.record("alert.acknowledge", alert)
        uow.commit()
    return alert


def as_api(alert: Alert) -> dict[str, Any]:
    """The contract's alert shape, the same in lists and alone."""
    out: dict[str, Any] = {
        "id": alert.id,
        "kind": alert.kind,
        "status": alert.status,
        "raised_at": alert.raised_at,
        "actor": (
            {"type": alert.actor_type, "id": alert.actor_id, "name": alert.actor_name}
            if alert.actor_type
            else None
        ),
        "ip": alert.ip,
        "summary": alert.summary,
        "figures": alert.figures,
        "seqs": alert.seqs,
        "acknowledged_at": alert.acknowledged_at,
        "acknowledged_by": alert.acknowledged_by,
    }
    return out


def get(db: Database, account_id: str, alert_id: str) -> Alert:
    alert: Alert = listing.one(db, Alert, account_id, alert_id, "alert")
    return alert


def page(
    db: Database,
    account_id: str,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Alert], str | None]:
    """Newest first, keyset-paged by id (ULIDs sort by creation)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"one of: {', '.join(STATUSES)}")
    if kind is not None and kind not in ALL_KINDS:
        raise InvalidInput("kind", f"one of: {', '.join(ALL_KINDS)}")
    after = decode_after(cursor)
    stmt = select(Alert).where(Alert.account_id == account_id)
    if status is not None:
        stmt = stmt.where(Alert.status == status)
    if kind is not None:
        stmt = stmt.where(Alert.kind == kind)
    if after is not None:
        stmt = stmt.where(Alert.id < after)
    with db.reader() as session:
        rows = list(session.scalars(stmt.order_by(Alert.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_after(rows[-1].id) if more else None


def open_count(db: Database, account_id: str) -> int:
    with db.reader() as session:
        return int(
            session.execute(
                select(func.count())
                .select_from(Alert)
                .where(Alert.account_id == account_id, Alert.status == "open")
            ).scalar_one()
        )
