"""Refused attempts in the log, as CloudTrail records AccessDenied.

A caller that authenticated but whose role or scope does not allow a request is answered 403, and the
attempt is logged in the caller's own account as ``<resource_type>.denied`` with
``{"attempted": <verb>, "status": 403, "reason": …}``, where an allowed request would have logged
``<resource_type>.<verb>``. Nothing else of the request is applied: the entry is its own transaction.

Such entries, like a revoked key's ``api_key.login_failed``, are written at most once a minute per actor,
action and resource, counted from the log itself, so a client retrying a refused call cannot flood the log
(or its write lock). Concurrent attempts queue on the actor's row, so the limit holds under races too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.base import Base, Database
from activitylog.db.models import Account, ActivityEntry, ApiKey, Audited, Suppression, User
from activitylog.errors import NotFound
from activitylog.log.record import Actor, RequestContext, Resource, ResourceRef
from activitylog.services.uow import UnitOfWork

LOG_INTERVAL = timedelta(minutes=1)
STATUS = 403


@dataclass(frozen=True)
class Attempt:
    """What a refused request tried: the action an allowed one would have logged, on the id its URL named
    (None for a create, or where the URL names none)."""

    resource_type: str
    verb: str
    resource_id: str | None = None

    @property
    def action(self) -> str:
        return f"{self.resource_type}.{self.verb}"


def logged_lately(
    session: Session,
    account_id: str,
    action: str,
    resource_id: str,
    actor_id: str,
    attempted: str | None = None,
) -> bool:
    """Whether this actor's ``action`` on this resource (and, for a refusal, this attempted verb) is
    already in the log within the last LOG_INTERVAL."""
    since = datetime.now(UTC) - LOG_INTERVAL
    changes = session.execute(  # the canonical JSON text of each
        select(ActivityEntry.changes).where(
            ActivityEntry.account_id == account_id,
            ActivityEntry.action == action,
            ActivityEntry.resource_id == resource_id,
            ActivityEntry.actor_id == actor_id,
            ActivityEntry.occurred_at >= since,
        )
    ).scalars()
    return any(attempted is None or json.loads(text).get("attempted") == attempted for text in changes)


_MODELS: dict[str, type[Any]] = {
    m.class_.__audit_type__: m.class_ for m in Base.registry.mappers if issubclass(m.class_, Audited)
}
_ACTOR_ROWS: dict[str, type[Any]] = {"session": User, "api_key": ApiKey}


def target(session: Session, account_id: str, attempt: Attempt) -> Resource:
    """The resource the entry names: the account's own row the URL names, else the account's collection of
    that type (its id: the account's). An id the account does not have is never written down, so another
    account's id, or a guessed one, neither reaches this log nor makes one entry per guess."""
    if attempt.resource_type == "account":
        return session.execute(select(Account).where(Account.id == account_id)).scalar_one()
    model = _MODELS.get(attempt.resource_type)
    if model is not None and attempt.resource_id is not None:
        key = model.email if model is Suppression else model.id
        value = attempt.resource_id.strip().lower() if model is Suppression else attempt.resource_id
        row = session.execute(
            select(model).where(model.account_id == account_id, key == value)
        ).scalar_one_or_none()
        if row is not None:
            return row  # type: ignore[no-any-return]
    return ResourceRef(attempt.resource_type, account_id)


def record_refusal(uow: UnitOfWork, attempt: Attempt, reason: str) -> None:
    """Log the refused attempt in ``uow`` (no rate limit: :func:`log_refusal` is the request path)."""
    resource = target(uow.session, uow.account_id, attempt)
    changes = {"attempted": attempt.verb, "status": STATUS, "reason": reason}
    uow.record(f"{attempt.resource_type}.denied", resource, changes)


def log_refusal(
    db: Database, account_id: str, actor: Actor, attempt: Attempt, reason: str, context: RequestContext
) -> None:
    """Log a refused request in the actor's account, unless the same refusal was logged within the minute."""
    action = f"{attempt.resource_type}.denied"

    def logged(session: Session) -> bool:
        resource = target(session, account_id, attempt)
        resource_id = resource.id if isinstance(resource, ResourceRef) else resource.audit_id
        return logged_lately(session, account_id, action, resource_id, actor.id, attempted=attempt.verb)

    with db.for_account(account_id).reader() as session:  # the common case, without the write lock
        if logged(session):
            return
    with UnitOfWork(db, account_id=account_id, actor=actor, context=context) as uow:
        model = _ACTOR_ROWS.get(actor.type)
        if model is not None:
            try:
                uow.get(model, actor.id)  # row-locked: a concurrent refusal waits, then sees this one's entry
            except NotFound:
                return  # removed since it authenticated: no one left to attribute it to
        if logged(uow.session):
            return
        record_refusal(uow, attempt, reason)
        uow.commit()
