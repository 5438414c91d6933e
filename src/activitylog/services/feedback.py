"""Delivery feedback from the mail transfer agent, and the reputation rules it triggers.

Events are stored idempotently by the agent's id. Each enabled rule is then evaluated against the new
events; a rule that holds acts through the same services as a person would, in its own unit of work, logged
with the rule as actor and the figures that triggered it in ``changes``. A disabled rule does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from activitylog.db.base import Database
from activitylog.db.models import Broadcast, Delivery, DeliveryEvent, ReputationRule, Suppression
from activitylog.log.record import Actor, RequestContext
from activitylog.services.uow import UnitOfWork


@dataclass(frozen=True)
class Ingested:
    accepted: int
    duplicates: int
    actions: int


def _store(db: Database, account_id: str, events: list[dict[str, Any]]) -> list[DeliveryEvent]:
    with db.writer() as session:
        ids = [e["id"] for e in events]
        known = set(
            session.scalars(
                select(DeliveryEvent.id).where(
                    DeliveryEvent.account_id == account_id, DeliveryEvent.id.in_(ids)
                )
            )
        )
        new: dict[str, DeliveryEvent] = {}
        for e in events:
            if e["id"] in known or e["id"] in new:
                continue
            new[e["id"]] = DeliveryEvent(
                account_id=account_id,
                id=e["id"],
                type=e["type"],
                bounce_type=e.get("bounce_type"),
                email=e["email"].strip().lower(),
                broadcast_id=e.get("broadcast_id"),
                received_at=datetime.now(UTC),
            )
        session.add_all(new.values())
        session.commit()
    return list(new.values())


def _rule_actor(rule: ReputationRule) -> Actor:
    return Actor(type="rule", id=rule.id, name=rule.name)


def _figure(value: Any) -> dict[str, Any]:
    return {"from": None, "to": value}


def _suppress(db: Database, rule: ReputationRule, email: str, trigger: dict[str, Any]) -> int:
    with UnitOfWork(db, account_id=rule.account_id, actor=_rule_actor(rule), context=RequestContext()) as uow:
        exists = uow.session.get(Suppression, (rule.account_id, email))
        if exists is not None:
            return 0
        row = Suppression(account_id=rule.account_id, email=email, reason=f"rule: {rule.name}")
        uow.add(row)
        uow.record("address.suppress", row, extra={"trigger": _figure(trigger)})
        uow.commit()
    return 1


def _pause(db: Database, rule: ReputationRule, broadcast_ids: list[str], trigger: dict[str, Any]) -> int:
    paused = 0
    with UnitOfWork(db, account_id=rule.account_id, actor=_rule_actor(rule), context=RequestContext()) as uow:
        for broadcast_id in broadcast_ids:
            broadcast = uow.session.execute(
                select(Broadcast)
                .where(Broadcast.account_id == rule.account_id, Broadcast.id == broadcast_id)
                .with_for_update()
            ).scalar_one_or_none()
            if broadcast is None or broadcast.status != "sending":
                continue
            broadcast.status = "paused"
            uow.record("broadcast.pause", broadcast, extra={"trigger": _figure(trigger)})
            paused += 1
        uow.commit()
    return paused


def _rate(db: Database, rule: ReputationRule, broadcast_id: str, now: datetime) -> dict[str, Any] | None:
    """The rule's figures for one broadcast over its window, if they cross its threshold."""
    cond = rule.condition
    since = now - timedelta(minutes=int(cond["window_minutes"]))
    kinds = ("bounce",) if cond["metric"] == "bounce_rate" else ("complaint",)
    with db.reader() as session:
        sends = session.execute(
            select(func.count()).where(
                Delivery.account_id == rule.account_id,
                Delivery.broadcast_id == broadcast_id,
                Delivery.status == "sent",
                Delivery.sent_at >= since,
            )
        ).scalar_one()
        hits = session.execute(
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


def _sending_ids(db: Database, account_id: str) -> list[str]:
    with db.reader() as session:
        return list(
            session.scalars(
                select(Broadcast.id).where(Broadcast.account_id == account_id, Broadcast.status == "sending")
            )
        )


def _act(db: Database, rule: ReputationRule, event: DeliveryEvent, trigger: dict[str, Any]) -> int:
    kind = rule.action["type"]
    if kind == "suppress_address":
        return _suppress(db, rule, event.email, trigger)
    if kind == "pause_broadcast":
        return _pause(db, rule, [event.broadcast_id] if event.broadcast_id else [], trigger)
    return _pause(db, rule, _sending_ids(db, rule.account_id), trigger)


def _event_matches(condition: dict[str, Any], event: DeliveryEvent) -> bool:
    if condition.get("event") == "complaint":
        return event.type == "complaint"
    return condition.get("event") == "hard_bounce" and event.type == "bounce" and event.bounce_type == "hard"


def apply_rules(db: Database, account_id: str, events: list[DeliveryEvent], now: datetime) -> int:
    with db.reader() as session:
        rules = session.scalars(
            select(ReputationRule).where(
                ReputationRule.account_id == account_id, ReputationRule.enabled.is_(True)
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
                    actions += _act(db, rule, event, trigger)
            continue
        checked: set[str] = set()
        for event in events:
            if event.broadcast_id and event.broadcast_id not in checked:
                checked.add(event.broadcast_id)
                figures = _rate(db, rule, event.broadcast_id, now)
                if figures is not None:
                    actions += _act(db, rule, event, figures)
    return actions


def ingest(db: Database, account_id: str, events: list[dict[str, Any]]) -> Ingested:
    db = db.for_account(account_id)
    stored = _store(db, account_id, events)
    actions = apply_rules(db, account_id, stored, datetime.now(UTC)) if stored else 0
    return Ingested(accepted=len(stored), duplicates=len(events) - len(stored), actions=actions)
