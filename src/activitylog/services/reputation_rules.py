"""Reputation rules: conditions on delivery feedback and the action taken when one holds."""

from __future__ import annotations

from typing import Any

from activitylog.db.models import ReputationRule
from activitylog.errors import Conflict
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork


def create_rule(uow: UnitOfWork, values: dict[str, Any]) -> ReputationRule:
    with uow:
        rule = crud.create(uow, ReputationRule, "rul", {"enabled": True, **values})
        uow.commit()
    return rule


def update_rule(uow: UnitOfWork, rule_id: str, values: dict[str, Any]) -> ReputationRule:
    with uow:
        rule = crud.update(uow, uow.get(ReputationRule, rule_id, what="reputation rule"), values)
        uow.commit()
    return rule


def delete_rule(uow: UnitOfWork, rule_id: str) -> None:
    with uow:
        crud.delete(uow, uow.get(ReputationRule, rule_id, what="reputation rule"))
        uow.commit()


def set_enabled(uow: UnitOfWork, rule_id: str, enabled: bool) -> ReputationRule:
    with uow:
        rule = uow.get(ReputationRule, rule_id, what="reputation rule")
        if rule.enabled == enabled:
            raise Conflict(f"rule {rule.id} is already {'enabled' if enabled else 'disabled'}")
        rule.enabled = enabled
        uow.record("reputation_rule.enable" if enabled else "reputation_rule.disable", rule)
        uow.commit()
    return rule
