"""Delivery feedback from the mail transfer agent, and the reputation rules it triggers.

Events are stored idempotently by the agent's id. Each enabled rule is then evaluated against the new
events; a rule that holds acts through the same unit of work as a person would, logged with the rule as
actor and the figures that triggered it in ``changes``. A disabled rule does nothing.

A batch, its events and every action they trigger are one transaction: if an action fails, no event of the
batch is stored, so the agent's retry is new events again and the actions happen then. (Stored first and
acted on after, a failed action left events the retry counted as duplicates, and the action never came.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from activitylog.db.base import Database
from activitylog.db.models import (
    Broadcast,
    BroadcastStatus,
    Delivery,
    DeliveryEvent,
    ReputationRule,
    Suppression,
)
from activitylog.log.record import Actor, RequestContext
from activitylog.services.broadcasts import advance, can
from activitylog.services.reputation_rules import RuleActionType, RuleEvent, RuleMetric
from activitylog.services.uow import UnitOfWork

_events = cast(Table, DeliveryEvent.__table__)
# An event id seen before, in this batch or by a concurrent one, is skipped by the insert itself.
_INSERT_NEW = {
    name: dialect.insert(_events).on_conflict_do_nothing(index_elements=["account_id", "id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
REASON_LENGTH: int = Suppression.__table__.c.reason.type.length  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Ingested:
    accepted: int
    duplicates: int
    actions: int


def _store(uow: UnitOfWork, events: list[dict[str, Any]]) -> list[DeliveryEvent]:
    """Insert the events not stored yet; returns those, in the batch's order. On PostgreSQL a concurrent
    batch holding the same id makes this one wait for it, then skip the id."""
    now = datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    for e in events:
        rows.setdefault(
            e["id"],
            {
                "account_id": uow.account_id,
                "id": e["id"],
                "type": e["type"],
                "bounce_type": e.get("bounce_type"),
                "email": e["email"].strip().lower(),
                "broadcast_id": e.get("broadcast_id"),
                "received_at": now,
            },
        )
    statement = _INSERT_NEW[uow.db.dialect].returning(_events.c.id)
    inserted = set(uow.session.execute(statement, list(rows.values())).scalars())
    return [DeliveryEvent(**row) for event_id, row in rows.items() if event_id in inserted]


def _rule_actor(rule: ReputationRule) -> Actor:
    return Actor(type="rule", id=rule.id, name=rule.name)


def _figure(value: Any) -> dict[str, Any]:
    return {"from": None, "to": value}


def suppression_reason(rule: ReputationRule) -> str:
    """``rule: <name>``, shortened to fit the column whatever the name's length (a name may be as long as
    the reason itself), so both engines store the same text and none refuses it."""
    reason = f"rule: {rule.name}"
    return reason if len(reason) <= REASON_LENGTH else reason[: REASON_LENGTH - 1] + "…"


def _suppress(uow: UnitOfWork, rule: ReputationRule, email: str, trigger: dict[str, Any]) -> int:
    exists = uow.session.get(Suppression, (rule.account_id, email))
    if exists is not None:
        return 0
    row = Suppression(account_id=rule.account_id, email=email, reason=suppression_reason(rule))
    uow.add(row)
    uow.record("address.suppress", row, extra={"trigger": _figure(trigger)}, actor=_rule_actor(rule))
    return 1


def _pause(uow: UnitOfWork, rule: ReputationRule, broadcast_ids: list[str], trigger: dict[str, Any]) -> int:
    paused = 0
    for broadcast_id in broadcast_ids:
        broadcast = uow.session.execute(
            select(Broadcast)
            .where(Broadcast.account_id == rule.account_id, Broadcast.id == broadcast_id)
            .with_for_update()
        ).scalar_one_or_none()
        if broadcast is None or not can(broadcast, "pause"):
            continue
        advance(broadcast, "pause")
        uow.record("broadcast.pause", broadcast, extra={"trigger": _figure(trigger)}, actor=_rule_actor(rule))
        paused += 1
    return paused


def _rate(uow: UnitOfWork, rule: ReputationRule, broadcast_id: str, now: datetime) -> dict[str, Any] | None:
    """The rule's figures for one broadcast over its window, if they cross its threshold."""
    cond = rule.condition
    since = now - timedelta(minutes=int(cond["window_minutes"]))
    kinds = ("bounce",) if cond["metric"] == RuleMetric.BOUNCE_RATE else ("complaint",)
    sends = uow.session.execute(
        select(func.count()).where(
            Delivery.account_id == rule.account_id,
            Delivery.broadcast_id == broadcast_id,
            Delivery.status == "sent",
            Delivery.sent_at >= since,
        )
    ).scalar_one()
    hits = uow.session.execute(
        select(func.count()).where(
            DeliveryEvent.account_id == rule.account_id,
            DeliveryEvent.broadcast_id == broadcast_id,
            DeliveryEvent.type.in_(kinds),
            DeliveryEvent.received_at >= since,
        )
    ).scalar_one()
    if sends < int(cond["min_sends"]) or hits / sends <= float(cond["threshold"]):
        return None
    return {
        "metric": cond["metric"],
        "rate": round(hits / sends, 6),
        "threshold": cond["threshold"],
        "events": hits,
        "sends": sends,
        "window_minutes": cond["window_minutes"],
        "broadcast_id": broadcast_id,
    }


def _sending_ids(uow: UnitOfWork) -> list[str]:
    return list(
        uow.session.scalars(
            select(Broadcast.id).where(
                Broadcast.account_id == uow.account_id, Broadcast.status == BroadcastStatus.SENDING
            )
        )
    )


def _act(uow: UnitOfWork, rule: ReputationRule, event: DeliveryEvent, trigger: dict[str, Any]) -> int:
    kind = rule.action["type"]
    if kind == RuleActionType.SUPPRESS_ADDRESS:
        return _suppress(uow, rule, event.email, trigger)
    if kind == RuleActionType.PAUSE_BROADCAST:
        return _pause(uow, rule, [event.broadcast_id] if event.broadcast_id else [], trigger)
    return _pause(uow, rule, _sending_ids(uow), trigger)


def _event_matches(condition: dict[str, Any], event: DeliveryEvent) -> bool:
    if condition.get("event") == RuleEvent.COMPLAINT:
        return event.type == "complaint"
    return (
        condition.get("event") == RuleEvent.HARD_BOUNCE
        and event.type == "bounce"
        and event.bounce_type == "hard"
    )


def apply_rules(uow: UnitOfWork, events: list[DeliveryEvent], now: datetime) -> int:
    rules = uow.session.scalars(
        select(ReputationRule).where(
            ReputationRule.account_id == uow.account_id, ReputationRule.enabled.is_(True)
        )
    ).all()
    actions = 0
    for rule in rules:
        if "event" in rule.condition:
            for event in events:
                if _event_matches(rule.condition, event):
                    trigger = {
                        "event_id": event.id,
                        "type": event.type,
                        "bounce_type": event.bounce_type,
                        "email": event.email,
                        "broadcast_id": event.broadcast_id,
                    }
                    actions += _act(uow, rule, event, trigger)
            continue
        checked: set[str] = set()
        for event in events:
            if event.broadcast_id and event.broadcast_id not in checked:
                checked.add(event.broadcast_id)
                figures = _rate(uow, rule, event.broadcast_id, now)
                if figures is not None:
                    actions += _act(uow, rule, event, figures)
    return actions


def ingest(
    db: Database, account_id: str, events: list[dict[str, Any]], poster: Actor, context: RequestContext
) -> Ingested:
    """Store a batch from the agent (``poster``, whose credential sent it, in the request ``context``) and act
    on it, all or nothing. A rule's entries carry that request's address and id: what set the rule off."""
    with UnitOfWork(db, account_id=account_id, actor=poster, context=context) as uow:
        stored = _store(uow, events)
        actions = apply_rules(uow, stored, datetime.now(UTC)) if stored else 0
        uow.commit()
    return Ingested(accepted=len(stored), duplicates=len(events) - len(stored), actions=actions)
