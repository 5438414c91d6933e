"""An account's alert policy: which detectors run and their thresholds, every one on by default.

The policy is one document (``GET/PATCH /api/v1/alert-policy``), stored whole once changed
(``alert_policies``) and validated field by field here, so the API and the dashboard refuse the same
values with the same messages. A PATCH names only what it changes: ``{"burst.delete": {"count": 50}}``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, bindparam, select

from activitylog.db.base import Database
from activitylog.db.models import AlertPolicy
from activitylog.errors import InvalidInput
from activitylog.services.uow import UnitOfWork


class _Detector(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class CredentialNewIp(_Detector):
    days: int = Field(30, ge=1, le=365, description="a network unused this many days counts as new")


class CredentialDormant(_Detector):
    days: int = Field(30, ge=1, le=3650, description="a key unused this many days is dormant")


class Burst(_Detector):
    count: int = Field(ge=2, le=100_000, description="at least this many actions by one actor...")
    minutes: int = Field(10, ge=1, le=1440, description="...within this many minutes...")
    ratio: float = Field(
        5.0, ge=1.0, le=1000.0, description="...and at least this many times its own 30-day rate"
    )


class BurstDelete(Burst):
    count: int = Field(25, ge=2, le=100_000, description="at least this many deletes or suppressions...")


class BurstExport(Burst):
    count: int = Field(10, ge=2, le=100_000, description="at least this many exports...")


class SigninFailures(_Detector):
    count: int = Field(
        10, ge=2, le=100_000, description="at least this many failed sign-ins on the account..."
    )
    minutes: int = Field(15, ge=1, le=1440, description="...within this many minutes")


class Policy(BaseModel):
    """Every detector of an account, with its settings; ``email`` sends each alert to owners and admins."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    credential_new_ip: CredentialNewIp = Field(default_factory=CredentialNewIp, alias="credential.new_ip")
    credential_dormant: CredentialDormant = Field(
        default_factory=CredentialDormant, alias="credential.dormant"
    )
    burst_delete: BurstDelete = Field(default_factory=BurstDelete, alias="burst.delete")
    burst_export: BurstExport = Field(default_factory=BurstExport, alias="burst.export")
    signin_failures: SigninFailures = Field(default_factory=SigninFailures, alias="signin.failures")
    sensitive_change: _Detector = Field(default_factory=_Detector, alias="sensitive.change")
    integrity_failure: _Detector = Field(default_factory=_Detector, alias="integrity.failure")
    email: bool = Field(True, description="email each alert to the account's owners and admins")

    def as_api(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

    def detector(self, kind: str) -> Any:
        return getattr(self, kind.replace(".", "_"))


KINDS = (
    "credential.new_ip",
    "credential.dormant",
    "burst.delete",
    "burst.export",
    "signin.failures",
    "sensitive.change",
    "integrity.failure",
)
OPERATOR_KINDS = ("signin.spray",)  # set by the operator's configuration, not per account
ALL_KINDS = KINDS + OPERATOR_KINDS
DEFAULTS = Policy()


def load(session: Any, account_id: str) -> Policy:
    return _parsed(session.get(AlertPolicy, account_id))


def of_account(db: Database, account_id: str) -> Policy:
    """The account's policy, read in a transaction of its own: the defaults until an owner changes it."""
    with db.for_account(account_id).reader() as session:
        return load(session, account_id)


def _parsed(row: AlertPolicy | None) -> Policy:
    return Policy.model_validate(row.alert_policy) if row is not None else DEFAULTS


_READ = select(AlertPolicy.alert_policy).where(AlertPolicy.account_id == bindparam("account_id"))
_validated: dict[str, Policy] = {}


def read(conn: Connection, account_id: str) -> Policy:
    """The account's policy on a Core connection (what the detectors read every batch), each document
    validated once per process; treat what it returns as read-only."""
    document = conn.execute(_READ, {"account_id": account_id}).scalar_one_or_none()
    if document is None:
        return DEFAULTS
    key = json.dumps(document, sort_keys=True)
    policy = _validated.get(key)
    if policy is None:
        if len(_validated) > 10_000:
            _validated.clear()
        policy = _validated[key] = Policy.model_validate(document)
    return policy


def merged(current: Policy, patch: dict[str, Any]) -> Policy:
    """The policy with ``patch`` applied, or InvalidInput naming the first bad field
    (``burst.delete.count: ...``)."""
    if not isinstance(patch, dict):
        raise InvalidInput("body", "an object of detector settings")
    document = current.as_api()
    for name, value in patch.items():
        if name not in document:
            raise InvalidInput(str(name), f"not a setting (one of: {', '.join(document)})")
        if isinstance(document[name], dict):
            if not isinstance(value, dict):
                raise InvalidInput(name, "an object of this detector's settings")
            unknown = set(value) - set(document[name])
            if unknown:
                raise InvalidInput(f"{name}.{sorted(unknown)[0]}", "not a setting of this detector")
            document[name] = {**document[name], **value}
        else:
            document[name] = value
    try:
        return Policy.model_validate(document, strict=True)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidInput(".".join(str(p) for p in error["loc"]), error["msg"]) from None


def update(uow: UnitOfWork, patch: dict[str, Any]) -> Policy:
    """Apply ``patch``; the change is one ``account.update`` entry (nothing logged if nothing changed)."""
    with uow:
        row = uow.session.get(AlertPolicy, uow.account_id, with_for_update=True)
        current = _parsed(row)
        policy = merged(current, patch)
        if policy == current:
            return policy  # the same values: not a change, nothing to log
        if row is None:
            row = AlertPolicy(account_id=uow.account_id, alert_policy=policy.as_api())
            uow.add(row)
            uow.record(
                "account.update", row, {"alert_policy": {"from": current.as_api(), "to": policy.as_api()}}
            )
        else:
            row.alert_policy = policy.as_api()
            uow.record("account.update", row)
        uow.commit()
    return policy
