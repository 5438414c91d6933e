"""The unit of work: one transaction, one actor, one account — the only way the application changes state.

Services open it, change rows, call :meth:`UnitOfWork.record` for the action, and :meth:`commit`. The entry
is written in the same transaction as the change, so both commit or neither does; the guard in
``log/guard.py`` refuses a commit whose changes no entry covers.

Units of work nest: a service called inside an open unit of work joins its transaction, and only the
outermost ``commit`` commits. That lets several actions form one atomic batch (an automated rule that
suppresses and pauses, a seeded history) without any service knowing. A unit of work's actor and request
never change; a batch that writes entries by several actors opens one inner unit of work per actor
(:meth:`UnitOfWork.acting_as`), all in the outer one's transaction.

A unit of work sees only its own account: whatever store it is handed (a request's, a worker's cross-account
view), it narrows it to ``account_id``, so on PostgreSQL row-level security backs every ``WHERE account_id``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Select, bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activitylog import metrics
from activitylog.db.base import Database
from activitylog.errors import Conflict, NotFound
from activitylog.log.guard import RowChange
from activitylog.log.record import Actor, RequestContext, Resource, record

T = TypeVar("T")

SYSTEM_CLI = Actor(type="system", id="cli", name="activitylog CLI")


class UnitOfWork:
    def __init__(
        self,
        db: Database,
        *,
        account_id: str,
        actor: Actor,
        context: RequestContext,
        clock: Callable[[], datetime] | None = None,
        auth_session: str | None = None,
    ) -> None:
        self.db = db.for_account(account_id)
        self.account_id = account_id
        self._actor, self._context = actor, context
        # The dashboard session the actor acts through (its token hash), if any: what "your other
        # sessions" are other than. Not logged; the actor is.
        self.auth_session = auth_session
        self.clock = clock or _utcnow
        self._entries: list[dict[str, Any]] = []
        self._session: Session | None = None
        self._depth = 0
        self._appended = 0  # entries this transaction wrote, counted in the metrics once it commits
        self._outer: UnitOfWork | None = None  # set on the units of work acting_as() makes

    @property
    def entries(self) -> list[dict[str, Any]]:
        """The entries this transaction wrote so far, as the API shows them (an inner unit of work's go
        with its outer one's)."""
        return (self._outer or self)._entries

    @entries.setter
    def entries(self, value: list[dict[str, Any]]) -> None:
        (self._outer or self)._entries = value

    @property
    def actor(self) -> Actor:
        return self._actor

    @property
    def context(self) -> RequestContext:
        return self._context

    def acting_as(self, actor: Actor, context: RequestContext) -> UnitOfWork:
        """A unit of work by ``actor`` (from ``context``) inside this open one: the same transaction, clock
        and entries; only this one's outermost ``commit`` commits them."""
        outer = self._outer or self
        if outer._session is None:
            raise RuntimeError("acting_as() needs an open unit of work")
        inner = UnitOfWork(
            outer.db, account_id=self.account_id, actor=actor, context=context, clock=self.clock
        )
        inner._outer = outer
        return inner

    @property
    def session(self) -> Session:
        if self._outer is not None:
            return self._outer.session
        if self._session is None:
            raise RuntimeError("unit of work used outside its 'with' block")
        return self._session

    def __enter__(self) -> UnitOfWork:
        if self._outer is not None:
            self._outer.__enter__()  # one level deeper in the outer transaction
            return self
        if self._depth == 0:
            self._session = self.db.writer()
            self._entries = []
            self._appended = 0
        self._depth += 1
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._outer is not None:
            self._outer.__exit__(exc_type, exc, tb)
            return
        self._depth -= 1
        if self._depth:
            return  # the outer unit of work decides
        session = self.session
        try:
            session.rollback()  # a no-op after commit; undoes everything otherwise
        finally:
            session.close()
            self._session = None

    def get(self, model: type[T], id_: str, *, what: str | None = None) -> T:
        """Load a row of this account for change (row-locked on PostgreSQL); 404 if it is not ours."""
        params = {"id": id_, "account_id": self.account_id}
        row: T | None = self.session.execute(_locked_by_id(model), params).scalar_one_or_none()
        if row is None:
            raise NotFound(f"{what or model.__name__.lower()} {id_} not found")
        return row

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    def delete(self, obj: Any) -> None:
        self.session.delete(obj)

    def record(
        self,
        action: str,
        resource: Resource,
        changes: dict[str, Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        actor: Actor | None = None,
        rows: Sequence[RowChange] = (),
    ) -> dict[str, Any] | None:
        """Log ``action`` on ``resource``, covering every change made since the previous entry (and
        ``rows``, the changes ``services.bulk`` made with Core statements)."""
        started = time.perf_counter()
        try:
            entry = record(
                self.session,
                account_id=self.account_id,
                actor=actor or self.actor,
                context=self.context,
                action=action,
                resource=resource,
                changes=changes,
                extra=extra,
                now=self.clock(),
                rows=rows,
            )
        except IntegrityError as exc:
            raise Conflict(_conflict_message(exc)) from None
        if entry is not None:
            metrics.APPEND_DURATION.observe(time.perf_counter() - started)
            outer = self._outer or self
            outer._appended += 1
            outer._entries.append(entry)
        return entry

    def commit(self) -> None:
        if self._outer is not None:
            return  # the outer unit of work commits
        if self._depth > 1:
            return
        try:
            self.session.commit()
        except IntegrityError as exc:
            raise Conflict(_conflict_message(exc)) from None
        if self._appended:
            metrics.ENTRIES_APPENDED.inc(self._appended)
            self._appended = 0


_LOCKED_BY_ID: dict[type[Any], Select[Any]] = {}


def _locked_by_id(model: type[Any]) -> Select[Any]:
    """Built once per model: the statement is the same for every call, only its parameters change."""
    statement = _LOCKED_BY_ID.get(model)
    if statement is None:
        key = model.id
        tenant = getattr(model, "account_id", key)  # an Account is its own tenant
        statement = select(model).where(key == bindparam("id"), tenant == bindparam("account_id"))
        statement = _LOCKED_BY_ID[model] = statement.with_for_update()
    return statement


def _utcnow() -> datetime:
    return datetime.now(UTC)


def assign(obj: Any, values: dict[str, Any]) -> None:
    """Set the given fields; the guard turns whatever really changed into the entry's diff."""
    for key, value in values.items():
        setattr(obj, key, value)


def _conflict_message(exc: IntegrityError) -> str:
    text = str(exc.orig).lower()
    if "unique" in text or "duplicate" in text:
        return "a resource with these values already exists"
    if "foreign key" in text:
        return "the change refers to a missing resource, or one still in use"
    return "the change conflicts with the current state"
