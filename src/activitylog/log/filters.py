"""The log's filters, declared once: name, label, description and parse rule of each.

Every surface reads this table — the API's query parameters and their OpenAPI descriptions
(``web/api/activity.py``), the dashboard's filter form (``web/dashboard/activity.py``), the CLI's options
(``cli/log_commands.py``), exports and manifests (through the API's dependency), and the docs (a test checks
``docs/api.md`` against it) — so a new filter is one row here plus its condition in ``log/query.py``.
Filters combine with AND; a comma inside one means OR (datasette's ``filters.py`` declares its operators
the same way, each with its human description).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from activitylog.errors import InvalidInput
from activitylog.log.actions import ACTOR_TYPES, RESOURCE_TYPES, actions_for
from activitylog.log.record import ip_key

MAX_LENGTH = 4000
"""The longest value any filter takes (characters)."""


@dataclass(frozen=True)
class ActivityFilter:
    actor: tuple[str, ...] = ()
    actor_type: tuple[str, ...] = ()
    on_behalf_of: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    resource_type: tuple[str, ...] = ()
    resource_id: tuple[str, ...] = ()
    ip_ranges: tuple[tuple[str, str], ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    raw: dict[str, str] = field(default_factory=dict)
    """The filter as given, for audit entries and file names."""
    seq_window: tuple[int, int] | None = None
    """``since``/``until`` looked up as the seq range ``[low, high)`` (``query.with_seq_window``)."""
    with_affected: bool = False
    """``resource_id`` also matches the entries that list the id among the other resources they changed
    (``log.affected``), as the contract's ``resource_id`` does; set by :func:`parse_filter`."""


def split(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))


def parse_instant(name: str, value: str | None) -> datetime | None:
    if value is None or value == "":
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(name, f"not an ISO 8601 date-time in years 1-9999 UTC: {value!r}") from None


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def ip_ranges(token: str) -> list[tuple[str, str]]:
    """The ``ip_key`` ranges one address or block covers. The recorder stores an IPv4-mapped address as the
    IPv4 address it carries (``web.context``), so a mapped address or block (``::ffff:10.0.0.0/104``) is
    also the IPv4 block it carries; a wider IPv6 block stays IPv6 only."""
    try:
        net = ipaddress.ip_network(token, strict=False)
    except ValueError:
        raise InvalidInput("ip", f"not an IP address or CIDR block: {token!r}") from None
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [net]
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(_IPV4_MAPPED):
        carried = net.network_address.ipv4_mapped
        assert carried is not None
        nets.append(ipaddress.IPv4Network((carried, net.prefixlen - 96)))
    ranges = []
    for block in nets:
        low, high = ip_key(str(block.network_address)), ip_key(str(block.broadcast_address))
        assert low is not None and high is not None
        ranges.append((low, high))
    return ranges


# ---- parse rules: one value (never empty) to the ActivityFilter fields it sets ----


def _ids(name: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {name: split(value)}


def _closed(name: str, vocabulary: tuple[str, ...], what: str) -> Callable[[str], dict[str, Any]]:
    def parse(value: str) -> dict[str, Any]:
        tokens = split(value)
        for t in tokens:
            if t not in vocabulary:
                raise InvalidInput(name, f"unknown {what} {t!r}; one of {', '.join(vocabulary)}")
        return {name: tokens}

    return parse


def _actions(value: str) -> dict[str, Any]:
    actions: set[str] = set()
    for token in split(value):
        expanded = actions_for(token)
        if expanded is None:
            raise InvalidInput("action", f"unknown action, verb or wildcard {token!r}")
        actions |= expanded
    return {"actions": tuple(sorted(actions))}


def _on_behalf_of(value: str) -> dict[str, Any]:
    """``<type>:<id>`` as entries store it, or a bare id, meaning that id as any actor type."""
    refs: dict[str, None] = {}
    for token in split(value):
        kind, sep, ident = token.partition(":")
        if not sep:
            refs.update((f"{t}:{token}", None) for t in ACTOR_TYPES)
        elif kind in ACTOR_TYPES and ident:
            refs[token] = None
        else:
            raise InvalidInput(
                "on_behalf_of", f"not an actor id or <type>:<id> with type one of {', '.join(ACTOR_TYPES)}"
            )
    return {"on_behalf_of": tuple(refs)}


def _resource_id(value: str) -> dict[str, Any]:
    return {"resource_id": split(value), "with_affected": True}


def _ip(value: str) -> dict[str, Any]:
    return {"ip_ranges": tuple(r for t in split(value) for r in ip_ranges(t))}


def _instant(name: str) -> Callable[[str], dict[str, Any]]:
    return lambda value: {name: parse_instant(name, value)}


def _text(value: str) -> dict[str, Any]:
    return {"q": value.strip() or None}


_OR = " A comma means OR."


@dataclass(frozen=True)
class FilterParam:
    """One filter: its query parameter (also the CLI's ``--name`` and the form field), the label the
    dashboard shows, the description every surface shows, and how a value becomes the filter."""

    name: str
    label: str
    description: str
    parse: Callable[[str], dict[str, Any]]
    placeholder: str = ""
    max_length: int = MAX_LENGTH

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


FILTERS: tuple[FilterParam, ...] = (
    FilterParam(
        "actor",
        "Actor",
        "Who acted: actor id(s) `usr_…`, `key_…`, `rul_…`, `scheduler`, `dispatcher`, `cli`." + _OR,
        _ids("actor"),
    ),
    FilterParam(
        "actor_type",
        "Actor type",
        "Actor type(s): `session`, `api_key`, `rule`, `system`." + _OR,
        _closed("actor_type", ACTOR_TYPES, "actor type"),
    ),
    FilterParam(
        "on_behalf_of",
        "On behalf of",
        "Whom work done later was for (the scheduler's sends): `api_key:key_…`, `session:usr_…`, or a bare "
        "id for any actor type." + _OR,
        _on_behalf_of,
        placeholder="e.g. key_…",
        max_length=1000,
    ),
    FilterParam(
        "action",
        "Action",
        "A full action (`broadcast.send`), a verb (`send`) or a wildcard (`broadcast.*`)." + _OR,
        _actions,
    ),
    FilterParam(
        "resource_type",
        "Resource type",
        "Resource type(s) of the target, e.g. `sending_domain`." + _OR,
        _closed("resource_type", RESOURCE_TYPES, "resource type"),
    ),
    FilterParam(
        "resource_id",
        "Resource id",
        "Id(s) of the target, e.g. `dom_…` (for an address: the address); also finds the bulk entries that "
        "changed it (a list's import or delete for a contact)." + _OR,
        _resource_id,
        placeholder="e.g. dom_…",
        max_length=2000,
    ),
    FilterParam(
        "ip",
        "IP or CIDR",
        "Source IP: an address or a CIDR block (`203.0.113.0/24`)." + _OR,
        _ip,
        placeholder="203.0.113.0/24",
        max_length=1000,
    ),
    FilterParam(
        "since",
        "Since",
        "ISO 8601 instant, inclusive (`Z` or an offset; naive = UTC).",
        _instant("since"),
        max_length=100,
    ),
    FilterParam(
        "until",
        "Until",
        "ISO 8601 instant, exclusive (`Z` or an offset; naive = UTC).",
        _instant("until"),
        max_length=100,
    ),
    FilterParam(
        "q",
        "Text",
        "Case-insensitive text in the summary, the resource's or the actor's name.",
        _text,
        placeholder="Search summaries, names, actors",
        max_length=1000,
    ),
)
NAMES: tuple[str, ...] = tuple(f.name for f in FILTERS)
BY_NAME: Mapping[str, FilterParam] = {f.name: f for f in FILTERS}


def parse_filter(**values: str | None) -> ActivityFilter:
    """Validate the filters as given (by name; absent or empty = not given); every error names its
    parameter. A name that is not a filter is a programming error here: surfaces refuse unknown names."""
    unknown = set(values) - set(NAMES)
    if unknown:
        raise TypeError(f"not activity filters: {', '.join(sorted(unknown))}")
    raw = {name: v for name in NAMES if (v := values.get(name)) not in (None, "")}
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        spec = BY_NAME[name]
        if len(value) > spec.max_length:
            raise InvalidInput(name, f"too long (at most {spec.max_length} characters)")
        parsed.update(spec.parse(value))
    start, end = parsed.get("since"), parsed.get("until")
    if start and end and start > end:
        raise InvalidInput("since", "must not be after until")
    return ActivityFilter(**parsed, raw=raw)


def parse_filter_object(
    raw: Mapping[str, Any] | None, field: str = "filter"
) -> tuple[dict[str, str], ActivityFilter]:
    """The filters as a JSON object (a stream's or a saved view's ``filter``): the same names, values and
    errors as the query parameters, each error named ``<field>.<name>``; a list value is the comma's OR.
    An empty value is refused, as an empty query parameter is: a filter that was asked for and not
    applied must not look like one that was. Returns the values as given (strings) and the parsed filter."""
    values: dict[str, str] = {}
    for name, value in (raw or {}).items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = ",".join(value)
        if not isinstance(value, str):
            raise InvalidInput(f"{field}.{name}", "must be a string (a comma means OR) or a list of strings")
        if not value.strip():
            raise InvalidInput(f"{field}.{name}", "empty; leave the filter out or give it a value")
        values[name] = value
    unknown = sorted(set(values) - set(NAMES))
    if unknown:
        raise InvalidInput(field, f"unknown filter {', '.join(unknown)}; one of {', '.join(sorted(NAMES))}")
    try:
        parsed = parse_filter(**values)
    except InvalidInput as exc:
        raise InvalidInput(f"{field}.{exc.field}", exc.message.split(": ", 1)[-1]) from None
    return values, parsed
