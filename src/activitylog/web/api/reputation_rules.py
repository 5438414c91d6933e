"""Reputation rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from activitylog.db.models import ReputationRule
from activitylog.services import reputation_rules
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import Db, Reader, WriteUow
from activitylog.web.schemas import Page, RuleIn, RuleOut, RulePatch

router = APIRouter(prefix="/api/v1/reputation-rules", tags=["reputation rules"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[RuleOut])
def list_rules(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, Any]:
    rows, next_cursor = page(db, ReputationRule, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/{rule_id}", response_model=RuleOut)
def get_rule(rule_id: str, caller: Reader, db: Db) -> Any:
    return one(db, ReputationRule, caller.account_id, rule_id, "reputation rule")


@router.post("", response_model=RuleOut, status_code=201)
def create_rule(body: RuleIn, uow: WriteUow) -> ReputationRule:
    return reputation_rules.create_rule(uow, body.model_dump(mode="json"))


@router.patch("/{rule_id}", response_model=RuleOut)
def patch_rule(rule_id: str, body: RulePatch, uow: WriteUow) -> ReputationRule:
    return reputation_rules.update_rule(uow, rule_id, body.changes())


@router.delete("/{rule_id}", status_code=204)
def delete_rule(rule_id: str, uow: WriteUow) -> Response:
    reputation_rules.delete_rule(uow, rule_id)
    return Response(status_code=204)


@router.post("/{rule_id}/enable", response_model=RuleOut)
def enable_rule(rule_id: str, uow: WriteUow) -> ReputationRule:
    return reputation_rules.set_enabled(uow, rule_id, True)


@router.post("/{rule_id}/disable", response_model=RuleOut)
def disable_rule(rule_id: str, uow: WriteUow) -> ReputationRule:
    return reputation_rules.set_enabled(uow, rule_id, False)
