"""Request and response bodies of the REST API (they are also its OpenAPI schema)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    EmailStr,
    Field,
    StrictInt,
    Tag,
    model_validator,
)

from activitylog.db.models import DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS
from activitylog.services.auth import ROLES, SCOPES
from activitylog.services.reputation_rules import RuleActionType, RuleEvent, RuleMetric
from activitylog.services.retention import MAX_RETENTION_DAYS

T = TypeVar("T")

_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$")


def _in_utc(value: datetime) -> datetime:
    """An aware instant in UTC, where the database keeps it: one that leaves years 1-9999 there (late on
    9999-12-31 west of Greenwich) is refused here, not a 500 when it is bound."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside years 1-9999 in UTC") from None


UtcInstant = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An instant given with its time zone (Z or an offset), kept in UTC."""


def _hostname(value: str) -> str:
    value = value.strip().lower().rstrip(".")
    if not _HOSTNAME.match(value):
        raise ValueError("not a valid domain name")
    return value


def _no_control(value: str) -> str:
    if any(not ch.isprintable() for ch in value):
        raise ValueError("must not contain control characters")
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_control)]
Hostname = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_hostname)]
Password = Annotated[str, Field(min_length=8, max_length=200)]
Role = Literal["owner", "admin", "member"]
Scope = Literal["full", "read", "write", "activity:read", "checkpoint:read"]
assert set(ROLES) == set(Role.__args__) and set(SCOPES) == set(Scope.__args__)  # type: ignore[attr-defined]


def _full_scope() -> list[Scope]:
    return ["full"]


def _nul_path(value: Any, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _nul_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    NULLABLE: ClassVar[frozenset[str]] = frozenset()
    """Of a PATCH body, the fields a null clears (the rest may not be empty, so null there means unset)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        """NUL cannot be stored in PostgreSQL text, and is never meaningful in this API's fields."""
        where = _nul_path(data)
        if where is not None:
            raise ValueError(f"{where}: must not contain NUL characters")
        return data

    def changes(self) -> dict[str, Any]:
        """The fields a PATCH set; null clears a field only where the field may be empty (``NULLABLE``)."""
        values = self.model_dump(exclude_unset=True, mode="python")
        return {k: v for k, v in values.items() if v is not None or k in self.NULLABLE}


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = Field(default=None, description="the offending input, when there is one")


class ErrorOut(BaseModel):
    """Every 4xx: ``{"error": {"code", "message", "field"?}}``."""

    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None


# ---- session ----
class SignInIn(Input):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    email: str
    role: str
    created_at: datetime
    last_login_at: datetime | None


class SessionOut(BaseModel):
    user: UserOut
    csrf_token: str


# ---- account and users ----
class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: datetime
    log_retention_days: int = Field(description="how long the log keeps an entry before it is purged")


class AccountPatch(Input):
    """A partial update: only the fields given change."""

    name: Name | None = None
    log_retention_days: StrictInt | None = Field(
        default=None,
        ge=MIN_RETENTION_DAYS,
        le=MAX_RETENTION_DAYS,
        description=f"days the log keeps an entry (at least {MIN_RETENTION_DAYS}; default "
        f"{DEFAULT_RETENTION_DAYS}); entries older than that, and under no legal hold, are purged",
    )


class UserIn(Input):
    email: EmailStr
    password: Password
    role: Role = "member"


class UserPatch(Input):
    email: EmailStr | None = None
    password: Password | None = None
    role: Role | None = None


# ---- API keys ----
class ApiKeyIn(Input):
    name: Name
    scopes: list[Scope] = Field(default_factory=_full_scope, min_length=1, max_length=4)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    scopes: list[str]
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None


class ApiKeyIssued(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response; store it now.")


# ---- lists and contacts ----
class ListIn(Input):
    name: Name


class ListOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: datetime


class ContactIn(Input):
    email: EmailStr
    first_name: Annotated[str, Field(max_length=200)] | None = None
    last_name: Annotated[str, Field(max_length=200)] | None = None


class ContactPatch(Input):
    NULLABLE = frozenset({"first_name", "last_name"})
    email: EmailStr | None = None
    first_name: Annotated[str, Field(max_length=200)] | None = None
    last_name: Annotated[str, Field(max_length=200)] | None = None
    status: Literal["subscribed", "unsubscribed"] | None = None


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    list_id: str
    email: str
    first_name: str | None
    last_name: str | None
    status: str
    created_at: datetime


class ImportResult(BaseModel):
    imported: int
    skipped: int
    contact_ids: list[str]


# ---- segments ----
class Condition(Input):
    field: Literal["email", "first_name", "last_name", "status", "engaged_within_days"]
    op: Literal["equals", "not_equals", "contains", "ends_with", "within"]
    value: Annotated[str, Field(max_length=320)] | StrictInt  # strict: "000…" over 320 is not the number 0

    @model_validator(mode="after")
    def _fits(self) -> Condition:
        if (self.field == "engaged_within_days") != (self.op == "within"):
            raise ValueError("op 'within' goes with field 'engaged_within_days' only")
        if self.op == "within" and (not isinstance(self.value, int) or not 1 <= self.value <= 3650):
            raise ValueError("value: days must be an integer from 1 to 3650")
        return self


class SegmentIn(Input):
    name: Name
    list_id: str = Field(min_length=1, max_length=40)
    conditions: list[Condition] = Field(default_factory=list, max_length=20)


class SegmentPatch(Input):
    name: Name | None = None
    list_id: str | None = Field(default=None, min_length=1, max_length=40)
    conditions: list[Condition] | None = Field(default=None, max_length=20)


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    list_id: str
    conditions: list[dict[str, Any]]
    created_at: datetime


# ---- broadcasts ----
class BroadcastIn(Input):
    name: Name
    subject: Annotated[str, Field(min_length=1, max_length=998), AfterValidator(_no_control)]
    from_email: EmailStr
    list_id: str | None = Field(default=None, max_length=40)
    segment_id: str | None = Field(default=None, max_length=40)
    html: str | None = Field(default=None, max_length=1_000_000)
    text: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one_audience(self) -> BroadcastIn:
        if bool(self.list_id) == bool(self.segment_id):
            raise ValueError("list_id: give exactly one of list_id or segment_id")
        return self


class BroadcastPatch(Input):
    NULLABLE = frozenset({"html", "text"})
    name: Name | None = None
    subject: Annotated[str, Field(min_length=1, max_length=998), AfterValidator(_no_control)] | None = None
    from_email: EmailStr | None = None
    list_id: str | None = Field(default=None, max_length=40)
    segment_id: str | None = Field(default=None, max_length=40)
    html: str | None = Field(default=None, max_length=1_000_000)
    text: str | None = Field(default=None, max_length=1_000_000)

    @model_validator(mode="after")
    def _one_audience(self) -> BroadcastPatch:
        if self.list_id and self.segment_id:
            raise ValueError("list_id: give list_id or segment_id, not both")
        return self


class ScheduleIn(Input):
    send_at: datetime

    @model_validator(mode="after")
    def _aware(self) -> ScheduleIn:
        if self.send_at.tzinfo is None:
            raise ValueError("send_at: give a time zone (Z or an offset)")
        try:
            self.send_at = _in_utc(self.send_at)
        except ValueError as exc:
            raise ValueError(f"send_at: {exc}") from None
        return self


class BroadcastOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    recipients: int | None = None
    delivered: int | None = None
    failed: int | None = None
    suppressed: int | None = None
    finished_at: datetime | None = None
    id: str
    name: str
    subject: str
    from_email: str
    list_id: str | None
    segment_id: str | None
    html: str | None
    text: str | None
    status: str
    send_at: datetime | None
    sent_at: datetime | None
    created_at: datetime


# ---- suppressions ----
class SuppressionIn(Input):
    email: EmailStr
    reason: Annotated[str, Field(max_length=200)] | None = None


class SuppressionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    email: str
    reason: str | None
    created_at: datetime


# ---- sending domains ----
class DomainIn(Input):
    domain: Hostname


class DomainPatch(Input):
    NULLABLE = frozenset({"dkim_private_key", "return_path", "tracking_domain"})
    dkim_selector: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] | None = None
    dkim_private_key: Annotated[str, Field(min_length=1, max_length=10_000)] | None = None
    return_path: Hostname | None = None
    tracking_domain: Hostname | None = None


class DomainOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    domain: str
    status: str
    dkim_selector: str
    has_dkim_private_key: bool
    return_path: str | None
    tracking_domain: str | None
    verified_at: datetime | None
    created_at: datetime


# ---- reputation rules ----
class EventCondition(Input):
    event: RuleEvent


class RateCondition(Input):
    metric: RuleMetric
    threshold: float = Field(gt=0, le=1)
    window_minutes: int = Field(ge=1, le=10_080)
    min_sends: int = Field(ge=1, le=10_000_000)


class RuleAction(Input):
    type: RuleActionType


def _condition_kind(value: Any) -> str:
    """A condition naming an ``event`` is per event; anything else is read as a rate, so that errors name
    the rate's fields rather than a missing ``event``."""
    if isinstance(value, dict):
        return "event" if "event" in value else "rate"
    return "event" if isinstance(value, EventCondition) else "rate"


RuleCondition = Annotated[
    Annotated[EventCondition, Tag("event")] | Annotated[RateCondition, Tag("rate")],
    Discriminator(_condition_kind),
]


class RuleIn(Input):
    name: Name
    condition: RuleCondition
    action: RuleAction


class RulePatch(Input):
    name: Name | None = None
    condition: RuleCondition | None = None
    action: RuleAction | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    condition: dict[str, Any]
    action: dict[str, Any]
    enabled: bool
    created_at: datetime


# ---- the activity log ----
class ActorOut(BaseModel):
    type: str
    id: str
    name: str | None


class ResourceOut(BaseModel):
    type: str
    id: str
    name: str | None


class EntryOut(BaseModel):
    account_id: str
    seq: int
    occurred_at: str
    actor: ActorOut
    on_behalf_of: str | None
    ip: str | None
    user_agent: str | None
    action: str
    resource: ResourceOut
    summary: str
    changes: dict[str, Any]
    request_id: str | None
    prev_hash: str
    hash: str
    chain_version: int | None = Field(
        default=None,
        description="2 for an entry holding a subscriber's personal data (canonical form v2); absent for v1",
    )
    salts: dict[str, Any] | None = Field(
        default=None,
        description="v2 only: for each committed value (a JSON Pointer) its salt (hex), or, once erased, "
        '{"commitment": hex}',
    )
    erased: bool | None = Field(default=None, description="v2 only: whether personal values were erased")


class PurgeRunOut(BaseModel):
    from_: int = Field(alias="from", description="the first seq of the range")
    to: int = Field(description="the last seq of the range")
    older_than: str = Field(description="the run's cut-off: every entry before it that no legal hold covered")
    retention_days: int = Field(description="the account's retention when the run purged the range")
    purge_seq: int = Field(description="the run's activity_log.purge entry")

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class ManifestOut(BaseModel):
    account_id: str
    filter: dict[str, str]
    format: str
    as_of_seq: int
    rows: int
    first_seq: int | None
    last_seq: int | None
    slice_digest: str
    checkpoint: str = Field(description="the signed note of the tree of as_of_seq entries")
    purged: list[tuple[int, int]] | None = Field(
        None, description="only when seqs up to as_of_seq were purged: the purged ranges [from, to]"
    )
    purges: list[PurgeRunOut] | None = Field(
        None, description="only with purged: each run's ranges and the retention policy it purged them under"
    )
    signature: str = Field(description="base64 Ed25519 over the canonical JSON of the other fields")


class InclusionOut(BaseModel):
    leaf_index: int
    tree_size: int
    leaf_hash: str
    hashes: list[str]


class ConsistencyOut(BaseModel):
    old_size: int
    tree_size: int
    hashes: list[str]


class VerifierKeyOut(BaseModel):
    origin: str
    verifier_key: str


class VerifyOut(BaseModel):
    ok: bool
    checked: int | None = None
    head: dict[str, Any] | None = None
    first_bad_seq: int | None = None
    reason: str | None = None
    mode: Literal["full", "incremental"] | None = None
    signed_size: int | None = Field(
        None, description="the size of the signed tree the log was checked against"
    )
    purged: list[tuple[int, int]] | None = Field(
        None, description="the ranges of seqs purged under the retention policy ([] when none were)"
    )
    purges: list[PurgeRunOut] | None = Field(
        None, description="each purge run's ranges with the policy it purged them under"
    )
