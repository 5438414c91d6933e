"""Who is calling, and what they may do: dashboard sessions and API keys resolved to a principal.

Sign-ins, sign-outs and failed sign-ins are logged like any other action, through the unit of work.
"""

from __future__ import annotations

import hmac
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activitylog.db.base import Database
from activitylog.db.models import ApiKey, AuthSession, SignInFailures, User
from activitylog.errors import Forbidden, TooManyRequests, Unauthorized
from activitylog.log.record import Actor, RequestContext
from activitylog.services import credentials
from activitylog.services.refusals import logged_lately
from activitylog.services.uow import UnitOfWork

ROLES = ("owner", "admin", "member")
SCOPES = ("full", "read", "write", "activity:read", "checkpoint:read")
LAST_USED_RESOLUTION = timedelta(seconds=60)

# What each permission needs: session roles allowed, API key scopes allowed (empty = keys never may).
_PERMISSIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "resources:read": (frozenset(ROLES), frozenset({"full", "read", "write"})),
    "resources:write": (frozenset(ROLES), frozenset({"full", "write"})),
    "activity:read": (frozenset({"owner", "admin"}), frozenset({"full", "activity:read"})),
    # Checkpoints and proofs only: hashes, sizes and roots, no entry content (what a witness needs).
    "checkpoint:read": (
        frozenset({"owner", "admin"}),
        frozenset({"full", "activity:read", "checkpoint:read"}),
    ),
    "api_keys:manage": (frozenset({"owner", "admin"}), frozenset()),
    # Where the log is delivered: a stream carries every entry off the machine.
    "streams:manage": (frozenset({"owner", "admin"}), frozenset({"full"})),
    # Legal holds decide what the retention purge may remove.
    "holds:manage": (frozenset({"owner", "admin"}), frozenset({"full"})),
    # Erasing a subscriber removes their personal data from the tables and the log for good.
    "subscribers:erase": (frozenset({"owner", "admin"}), frozenset({"full"})),
    # A user's own saved views of the log: for those who may read it; a key is no user, so it has none.
    "saved_views:manage": (frozenset({"owner", "admin"}), frozenset()),
    # Alerts: what the detectors found (reading, acknowledging) and the policy they follow (sessions only,
    # so a leaked key cannot turn off the detector that would notice it).
    "alerts:read": (frozenset({"owner", "admin"}), frozenset({"full", "activity:read"})),
    "alerts:manage": (frozenset({"owner", "admin"}), frozenset({"full"})),
    "alert_policy:manage": (frozenset({"owner", "admin"}), frozenset()),
    "users:manage": (frozenset({"owner"}), frozenset()),
    "account:manage": (frozenset({"owner"}), frozenset()),
}


@dataclass(frozen=True)
class Principal:
    account_id: str
    actor: Actor
    role: str | None = None  # for sessions
    scopes: frozenset[str] = field(default_factory=frozenset)  # for API keys
    csrf_token: str | None = None  # for sessions
    session: str | None = None  # for sessions: the token hash naming the dashboard session it came through

    @property
    def is_session(self) -> bool:
        return self.actor.type == "session"

    def can(self, permission: str) -> bool:
        roles, scopes = _PERMISSIONS[permission]
        if self.is_session:
            return self.role in roles
        return bool(self.scopes & scopes)

    def require(self, permission: str) -> None:
        if not self.can(permission):
            raise Refused(self, permission)


class Refused(Forbidden):
    """A role or scope check said no: answered 403, and logged as the attempt it was (``web/refusals.py``).
    A missing CSRF token is a plain :class:`Forbidden`: it proves nothing about who sent the request."""

    def __init__(self, principal: Principal, permission: str) -> None:
        who = f"role {principal.role}" if principal.is_session else "this API key"
        super().__init__(f"{who} may not do this (needs {permission})")
        self.principal = principal


# Built once: every API request runs it, and building a statement costs about as much as running it.
_KEY_BY_HASH = select(
    ApiKey.id,
    ApiKey.account_id,
    ApiKey.name,
    ApiKey.scopes,
    ApiKey.secret_hash,
    ApiKey.revoked_at,
    ApiKey.last_used_at,
    ApiKey.last_used_ip,
).where(ApiKey.secret_hash == bindparam("digest"))


def authenticate_api_key(db: Database, key: str, ip: str | None) -> Principal:
    if not credentials.api_key_well_formed(key):
        raise Unauthorized("invalid API key")
    digest = credentials.sha256_hex(key)
    with db.system().read_connection() as connection:  # the key names its account; nothing else does yet
        row = connection.execute(_KEY_BY_HASH, {"digest": digest}).one_or_none()
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        raise Unauthorized("invalid API key")
    if row.revoked_at is not None:
        raise RevokedApiKey(row.account_id, Actor(type="api_key", id=row.id, name=row.name))
    now = datetime.now(UTC)
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION or row.last_used_ip != ip:
        _touch_key(db.for_account(row.account_id), row.id, now, ip)
    return Principal(
        account_id=row.account_id,
        actor=Actor(type="api_key", id=row.id, name=row.name),
        scopes=frozenset(row.scopes),
    )


class RevokedApiKey(Unauthorized):
    """A revoked key was presented: answered 401 like any bad key, and logged by :func:`log_revoked_key_use`
    where the request's IP and user agent are known."""

    def __init__(self, account_id: str, actor: Actor) -> None:
        super().__init__("this API key has been revoked")
        self.account_id = account_id
        self.actor = actor


def _revoked_use_logged_since(session: Session, refused: RevokedApiKey) -> bool:
    """Counted from the log itself, like every refused attempt (``services/refusals.py``)."""
    key_id = refused.actor.id
    return logged_lately(session, refused.account_id, "api_key.login_failed", key_id, key_id)


def log_revoked_key_use(db: Database, refused: RevokedApiKey, context: RequestContext) -> None:
    """Log a revoked key's attempt in its account as ``api_key.login_failed`` on the key, at most once per key
    a minute, so a client retrying with an old key cannot flood the log (or the write lock)."""
    with db.for_account(refused.account_id).reader() as session:
        if _revoked_use_logged_since(session, refused):
            return
    with UnitOfWork(db, account_id=refused.account_id, actor=refused.actor, context=context) as uow:
        # row-locked: a concurrent attempt waits here, then sees the entry this one wrote
        key = uow.get(ApiKey, refused.actor.id)
        if _revoked_use_logged_since(uow.session, refused):
            return
        uow.record("api_key.login_failed", key, {})
        uow.commit()


def _touch_key(db: Database, key_id: str, now: datetime, ip: str | None) -> None:
    """Bookkeeping only (``last_used_*`` are not audited fields, so no entry is needed)."""
    with db.writer() as session:
        key = session.get(ApiKey, key_id)
        if key is not None:
            key.last_used_at = now
            key.last_used_ip = ip
            session.commit()


def authenticate_session(db: Database, token: str) -> Principal:
    digest = credentials.sha256_hex(token)
    with db.system().reader() as session:  # the session token names its account
        row = session.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.token_hash == digest)
        ).one_or_none()
    if row is None or row.AuthSession.expires_at <= datetime.now(UTC):
        raise Unauthorized("not signed in")
    user = row.User
    return Principal(
        account_id=user.account_id,
        actor=Actor(type="session", id=user.id, name=user.email),
        role=user.role,
        csrf_token=row.AuthSession.csrf_token,
        session=digest,
    )


@dataclass(frozen=True)
class SignIn:
    token: str
    csrf_token: str
    user: User


class FailureLimiter:
    """Failed sign-ins per source IP in a sliding window, in this process's memory: it stops one address
    from spraying guesses (each one costs an argon2 check) across many accounts."""

    def __init__(self, limit: int = 30, window: timedelta = timedelta(minutes=5)) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[datetime]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, ip: str, now: datetime) -> deque[datetime]:
        failures = self._failures[ip]
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def blocked(self, ip: str | None) -> bool:
        with self._lock:
            return ip is not None and len(self._recent(ip, datetime.now(UTC))) >= self.limit

    def failed(self, ip: str | None) -> None:
        if ip is not None:
            with self._lock:
                self._recent(ip, datetime.now(UTC)).append(datetime.now(UTC))


FAILED_SIGN_INS = FailureLimiter()
LOCKOUT_AFTER = 10  # failed sign-ins for one address within LOCKOUT_WINDOW lock it out until it ends
LOCKOUT_WINDOW = timedelta(minutes=15)

_failures = cast(Table, SignInFailures.__table__)
_INSERT_FAILURE: dict[str, Any] = {
    name: d.insert(_failures) for name, d in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _address_key(email: str) -> str:
    return credentials.sha256_hex("sign-in:" + email)


def _count_attempt(db: Database, address: str) -> int:
    """This attempt's number in the address's window, counted by one atomic upsert before any password is
    checked: of parallel attempts, exactly LOCKOUT_AFTER get a number that lets them check one. (Counted
    from the log after the check, 60 parallel guesses made 15 checks; an unknown address was never
    counted at all.) A window that has ended starts again at 1; a successful sign-in clears it."""
    now = datetime.now(UTC)
    insert = _INSERT_FAILURE[db.dialect].values(address=address, window_started_at=now, failures=1)
    ended = _failures.c.window_started_at <= now - LOCKOUT_WINDOW
    statement = insert.on_conflict_do_update(
        index_elements=[_failures.c.address],
        set_={
            "failures": case((ended, 1), else_=_failures.c.failures + 1),
            "window_started_at": case(
                (ended, insert.excluded.window_started_at), else_=_failures.c.window_started_at
            ),
        },
    ).returning(_failures.c.failures)
    with db.writer() as session:
        attempt = int(session.execute(statement).scalar_one())
        session.commit()
    return attempt


def anonymous(email: str) -> Actor:
    """Who a refused sign-in is by: nobody signed in, named by the address they typed."""
    return Actor(type="session", id="anonymous", name=email)


def record_failure(uow: UnitOfWork, user: User, locked: bool) -> None:
    """The entry of a refused sign-in of ``user`` (``uow`` acts as :func:`anonymous`), marked ``locked``
    when the address's window was already used up."""
    uow.record("user.login_failed", user, {"locked": {"from": None, "to": True}} if locked else {})


def _log_failure(db: Database, user: User, email: str, context: RequestContext, locked: bool) -> None:
    with UnitOfWork(db, account_id=user.account_id, actor=anonymous(email), context=context) as uow:
        record_failure(uow, user, locked)
        uow.commit()


def _no_one_to_log_for(db: Database, address: str) -> None:
    """An unknown address has no account whose log could hold its failure. The same durable commit is made
    instead (a write to its counter that changes nothing), so the answer takes as long as a known one's."""
    with db.writer() as session:
        session.execute(
            update(_failures).where(_failures.c.address == address).values(failures=_failures.c.failures)
        )
        session.commit()


def _failed(
    db: Database, user: User | None, email: str, address: str, context: RequestContext, locked: bool
) -> None:
    FAILED_SIGN_INS.failed(context.ip)
    if user is not None:
        _log_failure(db, user, email, context, locked=locked)
    else:
        _no_one_to_log_for(db, address)


def sign_in(db: Database, email: str, password: str, context: RequestContext, ttl: timedelta) -> SignIn:
    """Start a session, or log the failed attempt against the account the address belongs to.

    An address with a user and one without answer alike, attempt for attempt: the same password work
    (a dummy argon2 check when there is no user), the same commits, the same statuses — 401 for each of
    the first LOCKOUT_AFTER failures in a window, then 429 until it ends, even for the right password.
    Too many failures from one IP are refused before any of that (429). Refused attempts of a known user
    are logged, the locked ones marked ``locked``."""
    if FAILED_SIGN_INS.blocked(context.ip):
        raise TooManyRequests("too many failed sign-ins from this IP address; try again in a few minutes")
    email = email.strip().lower()
    with db.system().reader() as session:  # the address names its account
        user = session.execute(select(User).where(User.email == email)).scalar_one_or_none()
    address = _address_key(email)
    if _count_attempt(db, address) > LOCKOUT_AFTER:
        _failed(db, user, email, address, context, locked=True)
        raise TooManyRequests("too many failed sign-ins for this email address; try again in 15 minutes")
    ok = credentials.verify_password(user.password_hash if user else None, password)
    if user is None or not ok:
        _failed(db, user, email, address, context, locked=False)
        raise Unauthorized("wrong email or password")
    actor = Actor(type="session", id=user.id, name=user.email)
    with UnitOfWork(db, account_id=user.account_id, actor=actor, context=context) as uow:
        uow.session.execute(delete(_failures).where(_failures.c.address == address))
        signed_in = open_session(uow, ttl)
        uow.commit()
    return signed_in


def open_session(uow: UnitOfWork, ttl: timedelta) -> SignIn:
    """A session for the user ``uow`` acts as, whose password was checked, logged as ``user.login``."""
    token, csrf = credentials.new_token(), credentials.new_token()
    user = uow.get(User, uow.actor.id)
    now = uow.clock()
    uow.add(
        AuthSession(
            token_hash=credentials.sha256_hex(token),
            account_id=user.account_id,
            user_id=user.id,
            csrf_token=csrf,
            expires_at=now + ttl,
        )
    )
    user.last_login_at = now
    uow.record("user.login", user, {})
    return SignIn(token=token, csrf_token=csrf, user=user)


def sign_out(db: Database, principal: Principal, token: str, context: RequestContext) -> None:
    with UnitOfWork(db, account_id=principal.account_id, actor=principal.actor, context=context) as uow:
        close_session(uow, token)
        uow.commit()


def close_session(uow: UnitOfWork, token: str) -> None:
    """End the session ``token`` of the user ``uow`` acts as, logged as ``user.logout``."""
    uow.session.execute(delete(AuthSession).where(AuthSession.token_hash == credentials.sha256_hex(token)))
    uow.record("user.logout", uow.get(User, uow.actor.id), {})
