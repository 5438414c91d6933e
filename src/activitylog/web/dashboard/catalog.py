"""What the dashboard shows and edits for each kind of account resource.

Each :class:`Kind` names its table columns, its forms (validated by the API's own input schemas) and the
service calls behind them, so every page edit goes through the same unit of work, and the same log entry,
as the matching API call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ValidationError

from activitylog.db.models import (
    ApiKey,
    Broadcast,
    Contact,
    MailingList,
    ReputationRule,
    Segment,
    SendingDomain,
    Suppression,
    User,
)
from activitylog.errors import InvalidInput
from activitylog.log.query import entries_page, parse_filter
from activitylog.services import (
    api_keys,
    broadcasts,
    lists,
    reputation_rules,
    segments,
    sending_domains,
    suppressions,
    users,
)
from activitylog.services.reputation_rules import RuleActionType
from activitylog.services.uow import UnitOfWork
from activitylog.web import schemas
from activitylog.web.dashboard.render import as_invalid

FieldKind = Literal[
    "text", "email", "password", "secret", "pem", "textarea", "select", "multiselect", "datetime", "json"
]
SECRET_KINDS = ("password", "secret", "pem")  # never sent back to the browser; empty keeps the value
Options = Callable[[Any, str], list[tuple[str, str]]]  # (db, account_id) -> [(value, label)]


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: FieldKind = "text"
    required: bool = False
    hint: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    options: Options | None = None  # choices that depend on the account, e.g. its lists
    nullable: bool = False  # an empty value clears the field when editing (set by :func:`form`)

    def current(self, row: Any) -> Any:
        """The row's value as the form shows it; secrets are never sent back to the browser."""
        if row is None or self.kind in SECRET_KINDS:
            return ""
        value = getattr(row, self.name, "")
        if self.kind == "json":
            return json.dumps(value, indent=2)
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
        return "" if value is None else value


def form(schema: type[schemas.Input], *fields: FormField) -> tuple[FormField, ...]:
    """``fields`` as the form of ``schema``, which has the last word: every field is one of its fields, a
    select without choices offers the values its type allows, and on a PATCH schema an empty value clears
    exactly the fields a null clears there (``NULLABLE``; never a secret's, whose empty value keeps it)."""
    out = []
    for f in fields:
        declared = schema.model_fields.get(f.name)
        if declared is None:
            raise TypeError(f"{schema.__name__} has no field {f.name!r} for the dashboard's form")
        choices = f.choices or (
            _literals(declared.annotation) if f.kind in ("select", "multiselect") and not f.options else ()
        )
        nullable = f.name in schema.NULLABLE and f.kind not in SECRET_KINDS
        out.append(replace(f, choices=choices, nullable=nullable))
    return tuple(out)


def _literals(annotation: Any) -> tuple[tuple[str, str], ...]:
    """The values a ``Literal[...]`` (or an optional one) allows, as (value, label) pairs."""
    if get_origin(annotation) is Literal:
        return tuple((str(v), str(v)) for v in get_args(annotation))
    return next((found for arg in get_args(annotation) if (found := _literals(arg))), ())


@dataclass(frozen=True)
class Action:
    """A lifecycle button on a resource page (send, pause, verify, revoke ...)."""

    name: str
    label: str
    run: Callable[[UnitOfWork, str, dict[str, Any]], Any]
    when: Callable[[Any], bool] = lambda _row: True
    fields: tuple[FormField, ...] = ()
    danger: bool = False
    shows_secret: bool = False
    confirm: str = ""  # asked before it runs


@dataclass(frozen=True)
class Column:
    label: str
    value: Callable[[Any], Any]


@dataclass(frozen=True)
class Ref:
    """A cell naming another resource by id (a broadcast's list): the page shows its name, linked."""

    kind: str  # the slug of its kind in KINDS
    id: str
    label: str  # what it is, before its name: "list", "segment"


@dataclass(frozen=True)
class Panel:
    title: str
    checked_at: str  # when the rows were found so (an instant, shown in the viewer's zone)
    verdict: str
    rows: tuple[tuple[str, str, bool, str], ...]  # label, what was asked, whether it holds, why


@dataclass(frozen=True)
class Kind:
    slug: str
    title: str
    noun: str
    model: type[Any]
    columns: tuple[Column, ...]
    create_fields: tuple[FormField, ...]
    create: Callable[[UnitOfWork, dict[str, Any]], Any]
    read_permission: str = "resources:read"
    write_permission: str = "resources:write"
    edit_fields: tuple[FormField, ...] = ()
    update: Callable[[UnitOfWork, str, dict[str, Any]], Any] | None = None
    delete: Callable[[UnitOfWork, str], None] | None = None
    delete_label: str = "Delete"
    actions: tuple[Action, ...] = ()
    key: str = "id"
    parent: tuple[str, str] | None = None  # (field, parent kind slug): contacts belong to a list
    children: tuple[str, ...] = ()
    creates_secret: bool = False
    details: tuple[Column, ...] = field(default=())
    panel: Callable[[Any, str, Any], Panel | None] | None = None
    """(db, account_id, row) -> a table the detail page shows below the facts (a domain's DNS checks)."""
    offer: Callable[[Any, str, Any], broadcasts.Offer] | None = None
    """(db, account_id, row) -> what the row's lifecycle allows now (edit, delete, which actions) and why
    not the rest; None: edit and delete are always offered, each action by its ``when``."""

    @property
    def audit_type(self) -> str:
        return str(self.model.__audit_type__)


# ---- reading a submitted form ----
def _zone(values: dict[str, Any]) -> ZoneInfo | None:
    """The viewer's zone, which every date-time field of the form carries alike."""
    given = values.get("tz") or "UTC"
    names = set(given) if isinstance(given, list) else {given}
    if len(names) != 1:
        return None
    try:
        return ZoneInfo(str(names.pop()))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def cleaned(fields: tuple[FormField, ...], values: dict[str, Any], editing: bool) -> dict[str, Any]:
    """Form strings as the API's JSON would carry them: empty means absent (or cleared, when editing a
    field that may be empty), JSON fields parsed, local date-times given the viewer's time zone. Editing, a
    field the form did not send is left as it is (a browser sends every text field, empty or not, but
    leaves out a multiselect with nothing chosen: that one is cleared); a field sent twice is refused."""
    out: dict[str, Any] = {}
    for f in fields:
        if editing and f.kind != "multiselect" and f.name not in values:
            continue
        raw = values.get(f.name, [] if f.kind == "multiselect" else "")
        if f.kind == "multiselect":
            out[f.name] = raw if isinstance(raw, list) else [raw] if raw else []
            continue
        if isinstance(raw, list) and len(raw) > 1:
            raise InvalidInput(f.name, "given more than once; give it once")
        value = raw[0] if isinstance(raw, list) else raw
        value = value.strip() if f.kind not in (*SECRET_KINDS, "textarea") else value
        if value == "":
            if editing and f.nullable:
                out[f.name] = None
            elif editing and f.kind not in SECRET_KINDS and f.required:
                out[f.name] = value  # blanking a required field is an error, not "leave unchanged"
            continue
        if f.kind == "json":
            try:
                out[f.name] = json.loads(value)
            except (ValueError, RecursionError):  # nested past the parser's depth
                raise InvalidInput(f.name, "not valid JSON") from None
        elif f.kind == "datetime":
            zone = _zone(values)
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidInput(f.name, "not a date and time") from None
            out[f.name] = moment if moment.tzinfo or zone is None else moment.replace(tzinfo=zone)
        else:
            out[f.name] = value
    return out


def validated(schema: type[BaseModel], values: dict[str, Any]) -> Any:
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise as_invalid(exc) from None


# ---- choices that depend on the account ----
def _named(model: type[Any], label: str = "name") -> Options:
    def options(db: Any, account_id: str) -> list[tuple[str, str]]:
        from sqlalchemy import select  # noqa: PLC0415

        column = getattr(model, label)
        with db.reader() as session:
            rows = session.execute(
                select(model.id, column).where(model.account_id == account_id).order_by(column).limit(500)
            ).all()
        return [(r[0], r[1]) for r in rows]

    return options


LIST_OPTIONS = _named(MailingList)
SEGMENT_OPTIONS = _named(Segment)


# ---- the kinds ----
def _create_list(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    return lists.create_list(uow, validated(schemas.ListIn, v).name)


def _update_list(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    return lists.update_list(uow, id_, validated(schemas.ListIn, v).model_dump())


def _create_contact(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    list_id = str(v.pop("list_id", ""))
    return lists.create_contact(uow, list_id, validated(schemas.ContactIn, v).model_dump(mode="python"))


def _update_contact(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    patch = validated(schemas.ContactPatch, v).changes()
    return lists.update_contact(uow, id_, patch)


def _create_segment(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    return segments.create_segment(uow, validated(schemas.SegmentIn, v).model_dump(mode="json"))


def _update_segment(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    return segments.update_segment(uow, id_, validated(schemas.SegmentPatch, v).changes())


def _create_broadcast(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    return broadcasts.create_broadcast(uow, validated(schemas.BroadcastIn, v).model_dump(mode="python"))


def _update_broadcast(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    patch = validated(schemas.BroadcastPatch, v)
    return broadcasts.update_broadcast(uow, id_, patch.changes())


def _schedule(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    body = validated(schemas.ScheduleIn, cleaned(SEND_AT, v, editing=False))
    return broadcasts.schedule(uow, id_, body.send_at)


def _suppress(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    body = validated(schemas.SuppressionIn, v)
    return suppressions.suppress(uow, str(body.email), body.reason)


def _update_domain(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    patch = validated(schemas.DomainPatch, v)
    return sending_domains.update_domain(uow, id_, patch.changes())


DNS_LABELS = {"spf": "SPF", "dkim": "DKIM", "return_path": "Return path"}


def _dns_panel(db: Any, account_id: str, row: SendingDomain) -> Panel | None:
    """The domain's last DNS check, record by record, as its ``sending_domain.verify`` entry holds it."""
    only_verify = parse_filter(resource_type="sending_domain", resource_id=row.id, action="verify")
    entries, _ = entries_page(db, account_id, only_verify, cursor=None, limit=1)
    checks = sending_domains.last_checks(entries[0]["changes"]) if entries else {}
    if not checks:
        return None
    return Panel(
        title="DNS records",
        checked_at=entries[0]["occurred_at"],
        verdict="every record holds." if all(c.ok for c in checks.values()) else "not verified.",
        rows=tuple((DNS_LABELS.get(k, k), c.name, c.ok, c.detail) for k, c in checks.items()),
    )


def _rule_values(v: dict[str, Any]) -> dict[str, Any]:
    if "action" in v:
        v = {**v, "action": {"type": v["action"]}}
    return v


def _create_rule(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    body = validated(schemas.RuleIn, _rule_values(v))
    return reputation_rules.create_rule(uow, body.model_dump(mode="json"))


def _update_rule(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    return reputation_rules.update_rule(uow, id_, validated(schemas.RulePatch, _rule_values(v)).changes())


def _create_key(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    body = validated(schemas.ApiKeyIn, {"scopes": ["full"], **{k: x for k, x in v.items() if x != []}})
    return api_keys.create_api_key(uow, name=body.name, scopes=list(body.scopes))


def _create_user(uow: UnitOfWork, v: dict[str, Any]) -> Any:
    body = validated(schemas.UserIn, v)
    return users.create_user(uow, email=str(body.email), password=body.password, role=body.role)


def _update_user(uow: UnitOfWork, id_: str, v: dict[str, Any]) -> Any:
    return users.update_user(uow, id_, validated(schemas.UserPatch, v).changes())


def _audience(row: Any) -> Ref | str:
    if row.list_id:
        return Ref("lists", row.list_id, "list")
    if row.segment_id:
        return Ref("segments", row.segment_id, "segment")
    return "released when archived (see History)"


def _when_at(row: Any) -> datetime | None:
    return row.send_at or row.sent_at  # type: ignore[no-any-return]


def _lifecycle(name: str) -> Callable[[UnitOfWork, str, dict[str, Any]], Any]:
    step = getattr(broadcasts, name)
    return lambda u, i, _v: step(u, i)


NAME = FormField("name", "Name", required=True)
ARCHIVE_CONFIRM = (
    "Archive this broadcast? It is kept with its delivery records and can no longer be sent or edited; "
    "its list or segment is released."
)
SEND_AT = form(
    schemas.ScheduleIn, FormField("send_at", "Send at", "datetime", required=True, hint="In your time zone.")
)
CONDITIONS_HINT = 'A JSON list, e.g. [{"field": "email", "op": "ends_with", "value": "@example.com"}]'
RULE_HINT = (
    'e.g. {"event": "complaint"} or {"metric": "bounce_rate", "threshold": 0.05, '
    '"window_minutes": 60, "min_sends": 100}'
)
RULE_ACTIONS = (
    (RuleActionType.SUPPRESS_ADDRESS.value, "Suppress the address"),
    (RuleActionType.PAUSE_BROADCAST.value, "Pause the broadcast"),
    (RuleActionType.PAUSE_SENDING.value, "Pause all sending"),
)

BROADCAST_FIELDS = (
    NAME,
    FormField("subject", "Subject", required=True),
    FormField("from_email", "From address", "email", required=True),
    FormField("list_id", "List", "select", options=LIST_OPTIONS, hint="A list or a segment."),
    FormField("segment_id", "Segment", "select", options=SEGMENT_OPTIONS),
    FormField("text", "Plain-text body", "textarea", nullable=True),
    FormField("html", "HTML body", "textarea", nullable=True),
)
CONTACT_FIELDS = (
    FormField("email", "Email", "email", required=True),
    FormField("first_name", "First name"),
    FormField("last_name", "Last name"),
)
RULE_FIELDS = (
    NAME,
    FormField("condition", "Condition", "json", required=True, hint=RULE_HINT),
    FormField("action", "Action", "select", required=True, choices=RULE_ACTIONS),
)

KINDS: dict[str, Kind] = {
    k.slug: k
    for k in (
        Kind(
            slug="broadcasts",
            title="Broadcasts",
            noun="broadcast",
            model=Broadcast,
            columns=(
                Column("Name", lambda r: r.name),
                Column("Status", lambda r: r.status),
                Column("Audience", _audience),
                Column("Send time", _when_at),
            ),
            details=(
                Column("Subject", lambda r: r.subject),
                Column("From", lambda r: r.from_email),
                Column("Recipients", lambda r: r.recipients),
                Column("Delivered", lambda r: r.delivered),
                Column("Failed", lambda r: r.failed),
                Column("Suppressed", lambda r: r.suppressed),
                Column("Finished", lambda r: r.finished_at),
            ),
            create_fields=form(schemas.BroadcastIn, *BROADCAST_FIELDS),
            create=_create_broadcast,
            edit_fields=form(schemas.BroadcastPatch, *BROADCAST_FIELDS),
            update=_update_broadcast,
            delete=broadcasts.delete_broadcast,
            # which of these a broadcast offers is the lifecycle's to say (services/broadcasts.py)
            actions=(
                Action("send", "Send now", _lifecycle("send")),
                Action("schedule", "Schedule", _schedule, fields=SEND_AT),
                Action("unschedule", "Unschedule", _lifecycle("unschedule")),
                Action("pause", "Pause", _lifecycle("pause")),
                Action("resume", "Resume", _lifecycle("resume")),
                Action("archive", "Archive", _lifecycle("archive"), confirm=ARCHIVE_CONFIRM),
            ),
            offer=broadcasts.offer,
        ),
        Kind(
            slug="lists",
            title="Lists",
            noun="list",
            model=MailingList,
            columns=(Column("Name", lambda r: r.name), Column("Created", lambda r: r.created_at)),
            create_fields=form(schemas.ListIn, NAME),
            create=_create_list,
            edit_fields=form(schemas.ListIn, NAME),
            update=_update_list,
            delete=lists.delete_list,
            children=("contacts",),
        ),
        Kind(
            slug="contacts",
            title="Contacts",
            noun="contact",
            model=Contact,
            columns=(
                Column("Email", lambda r: r.email),
                Column("Name", lambda r: " ".join(p for p in (r.first_name, r.last_name) if p)),
                Column("Status", lambda r: r.status),
            ),
            create_fields=form(schemas.ContactIn, *CONTACT_FIELDS),
            create=_create_contact,
            edit_fields=form(schemas.ContactPatch, *CONTACT_FIELDS, FormField("status", "Status", "select")),
            update=_update_contact,
            delete=lists.delete_contact,
            parent=("list_id", "lists"),
        ),
        Kind(
            slug="segments",
            title="Segments",
            noun="segment",
            model=Segment,
            columns=(
                Column("Name", lambda r: r.name),
                Column("List", lambda r: Ref("lists", r.list_id, "list")),
            ),
            details=(Column("Conditions", lambda r: json.dumps(r.conditions)),),
            create_fields=form(
                schemas.SegmentIn,
                NAME,
                FormField("list_id", "List", "select", required=True, options=LIST_OPTIONS),
                FormField("conditions", "Conditions", "json", hint=CONDITIONS_HINT),
            ),
            create=_create_segment,
            edit_fields=form(
                schemas.SegmentPatch,
                NAME,
                FormField("list_id", "List", "select", required=True, options=LIST_OPTIONS),
                FormField("conditions", "Conditions", "json", required=True, hint=CONDITIONS_HINT),
            ),
            update=_update_segment,
            delete=segments.delete_segment,
        ),
        Kind(
            slug="suppressions",
            title="Suppressions",
            noun="suppressed address",
            model=Suppression,
            key="email",
            columns=(
                Column("Address", lambda r: r.email),
                Column("Reason", lambda r: r.reason or ""),
                Column("Since", lambda r: r.created_at),
            ),
            create_fields=form(
                schemas.SuppressionIn,
                FormField("email", "Address", "email", required=True),
                FormField("reason", "Reason"),
            ),
            create=_suppress,
            delete=suppressions.unsuppress,
            delete_label="Unsuppress",
        ),
        Kind(
            slug="sending-domains",
            title="Sending domains",
            noun="sending domain",
            model=SendingDomain,
            columns=(
                Column("Domain", lambda r: r.domain),
                Column("Status", lambda r: r.status),
                Column("DKIM selector", lambda r: r.dkim_selector),
                Column("Return path", lambda r: r.return_path or ""),
            ),
            details=(
                Column("Tracking domain", lambda r: r.tracking_domain or ""),
                Column("DKIM private key", lambda r: "set" if r.dkim_private_key else "not set"),
                Column("Verified", lambda r: r.verified_at or ""),
            ),
            create_fields=form(
                schemas.DomainIn, FormField("domain", "Domain", required=True, hint="e.g. mail.example.com")
            ),
            create=lambda u, v: sending_domains.create_domain(u, validated(schemas.DomainIn, v).domain),
            edit_fields=form(
                schemas.DomainPatch,
                FormField("dkim_selector", "DKIM selector", required=True),
                FormField(
                    "dkim_private_key",
                    "DKIM private key",
                    "pem",
                    hint="Paste the PEM key, -----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY----- "
                    "(RSA of 1024 bits or more, or Ed25519). Leave empty to keep the current key.",
                ),
                FormField("return_path", "Return path"),
                FormField("tracking_domain", "Tracking domain"),
            ),
            update=_update_domain,
            delete=sending_domains.delete_domain,
            actions=(Action("verify", "Verify DNS", lambda u, i, _v: sending_domains.verify_domain(u, i)),),
            panel=_dns_panel,
        ),
        Kind(
            slug="reputation-rules",
            title="Reputation rules",
            noun="reputation rule",
            model=ReputationRule,
            columns=(
                Column("Name", lambda r: r.name),
                Column("Enabled", lambda r: "yes" if r.enabled else "no"),
                Column("Condition", lambda r: json.dumps(r.condition)),
                Column("Action", lambda r: r.action.get("type", "")),
            ),
            create_fields=form(schemas.RuleIn, *RULE_FIELDS),
            create=_create_rule,
            edit_fields=form(schemas.RulePatch, *RULE_FIELDS),
            update=_update_rule,
            delete=reputation_rules.delete_rule,
            actions=(
                Action(
                    "enable",
                    "Enable",
                    lambda u, i, _v: reputation_rules.set_enabled(u, i, True),
                    lambda r: not r.enabled,
                ),
                Action(
                    "disable",
                    "Disable",
                    lambda u, i, _v: reputation_rules.set_enabled(u, i, False),
                    lambda r: r.enabled,
                ),
            ),
        ),
        Kind(
            slug="api-keys",
            title="API keys",
            noun="API key",
            model=ApiKey,
            read_permission="api_keys:manage",
            write_permission="api_keys:manage",
            columns=(
                Column("Name", lambda r: r.name),
                Column("Prefix", lambda r: r.prefix),
                Column("Scopes", lambda r: ", ".join(r.scopes)),
                Column("Last used", lambda r: r.last_used_at or "never"),
                Column("Revoked", lambda r: r.revoked_at or ""),
            ),
            details=(Column("Last used from", lambda r: r.last_used_ip or ""),),
            create_fields=form(
                schemas.ApiKeyIn,
                NAME,
                FormField(
                    "scopes",
                    "Scopes",
                    "multiselect",
                    hint="Default: full.",
                ),
            ),
            create=_create_key,
            creates_secret=True,
            actions=(
                Action(
                    "rotate",
                    "Rotate secret",
                    lambda u, i, _v: api_keys.rotate_api_key(u, i),
                    lambda r: r.revoked_at is None,
                    shows_secret=True,
                ),
                Action(
                    "revoke",
                    "Revoke",
                    lambda u, i, _v: api_keys.revoke_api_key(u, i),
                    lambda r: r.revoked_at is None,
                    danger=True,
                ),
            ),
        ),
        Kind(
            slug="users",
            title="Users",
            noun="user",
            model=User,
            write_permission="users:manage",
            columns=(
                Column("Email", lambda r: r.email),
                Column("Role", lambda r: r.role),
                Column("Last sign-in", lambda r: r.last_login_at or "never"),
            ),
            create_fields=form(
                schemas.UserIn,
                FormField("email", "Email", "email", required=True),
                FormField("password", "Password", "password", required=True, hint="At least 8 characters."),
                FormField("role", "Role", "select", required=True),
            ),
            create=_create_user,
            edit_fields=form(
                schemas.UserPatch,
                FormField("email", "Email", "email", required=True),
                FormField(
                    "password", "New password", "password", hint="Leave empty to keep the current one."
                ),
                FormField("role", "Role", "select", required=True),
            ),
            update=_update_user,
            delete=users.delete_user,
        ),
    )
}
NAVIGATION = (
    "broadcasts",
    "lists",
    "segments",
    "suppressions",
    "sending-domains",
    "reputation-rules",
    "api-keys",
    "users",
)
