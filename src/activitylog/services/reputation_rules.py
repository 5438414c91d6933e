"""Reputation rules: conditions on delivery feedback and the action taken when one holds.

The rules' vocabularies are declared here, once: the API's schemas, the feedback that applies the rules, the
dashboard's form and the demo all name their members.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from activitylog.db.models import ReputationRule
from activitylog.errors import Conflict
from activitylog.services import crud
from activitylog.services.uow import UnitOfWork


class RuleEvent(StrEnum):
    """A per-event condition: the rule acts on each such event (``{"event": …}``)."""

    COMPLAINT = "complaint"
    HARD_BOUNCE = "hard_bounce"


class RuleMetric(StrEnum):
    """A rate condition: the rule acts when this share of a broadcast's sends passes its threshold."""

    BOUNCE_RATE = "bounce_rate"
    COMPLAINT_RATE = "complaint_rate"


class RuleActionType(StrEnum):
    """What a rule does when its condition holds (``{"type": …}``)."""

    SUPPRESS_ADDRESS = "suppress_address"  # the address the event was about
    PAUSE_BROADCAST = "pause_broadcast"  # the broadcast the event was about
    PAUSE_SENDING = "pause_sending"  # every broadcast of the account that is sending


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
