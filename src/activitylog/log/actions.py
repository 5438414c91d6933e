"""The closed vocabulary of the log: resource types, verbs, and which actions exist.

An action is ``<resource_type>.<verb>``; recording one outside this table is a programming error, so a typo
can never reach the log. The verb filter (``action=send``) expands through this table into an index-friendly
``action IN (...)``.
"""

from __future__ import annotations

VERBS = (
    "create", "update", "delete", "schedule", "unschedule", "send", "pause", "resume", "suppress",
    "unsuppress", "enable", "disable", "revoke", "rotate", "verify", "import", "export",
    "login", "logout", "login_failed",
)  # fmt: skip

ACTIONS: dict[str, tuple[str, ...]] = {
    "account": ("create", "update"),
    "user": ("create", "update", "delete", "login", "logout", "login_failed"),
    "api_key": ("create", "revoke", "rotate", "login_failed"),  # login_failed: a revoked key was refused
    "list": ("create", "update", "delete", "import"),
    "contact": ("create", "update", "delete"),
    "segment": ("create", "update", "delete"),
    "broadcast": ("create", "update", "delete", "schedule", "unschedule", "send", "pause", "resume"),
    "address": ("suppress", "unsuppress"),
    "sending_domain": ("create", "update", "delete", "verify"),
    "reputation_rule": ("create", "update", "delete", "enable", "disable"),
    "activity_log": ("export", "update"),  # update: an operator accepted a restored history for signing
}

RESOURCE_TYPES = tuple(ACTIONS)
ALL_ACTIONS = frozenset(f"{r}.{v}" for r, verbs in ACTIONS.items() for v in verbs)

# Actions that record an event rather than a row change: they are logged even when no audited row changed.
EVENT_ACTIONS = frozenset(
    {
        "user.login",
        "user.logout",
        "user.login_failed",
        "api_key.login_failed",
        "activity_log.export",
        "broadcast.send",
    }
)

ACTOR_TYPES = ("session", "api_key", "rule", "system")

_PAST = {
    "create": "Created",
    "update": "Updated",
    "delete": "Deleted",
    "schedule": "Scheduled",
    "unschedule": "Unscheduled",
    "send": "Sent",
    "pause": "Paused",
    "resume": "Resumed",
    "suppress": "Suppressed",
    "unsuppress": "Unsuppressed",
    "enable": "Enabled",
    "disable": "Disabled",
    "revoke": "Revoked",
    "rotate": "Rotated",
    "verify": "Verified",
    "import": "Imported",
    "export": "Exported",
}

_NOUN = {
    "account": "account",
    "user": "user",
    "api_key": "API key",
    "list": "list",
    "contact": "contact",
    "segment": "segment",
    "broadcast": "broadcast",
    "address": "address",
    "sending_domain": "sending domain",
    "reputation_rule": "reputation rule",
    "activity_log": "activity log",
}


def actions_for(token: str) -> set[str] | None:
    """Expand one ``action`` filter token (full action, verb, or ``type.*``) to actions; None if unknown."""
    if token.endswith(".*"):
        rtype = token[:-2]
        return {f"{rtype}.{v}" for v in ACTIONS[rtype]} if rtype in ACTIONS else None
    if "." in token:
        return {token} if token in ALL_ACTIONS else None
    if token in VERBS:
        return {a for a in ALL_ACTIONS if a.split(".", 1)[1] == token}
    return None


def summarize(action: str, resource_name: str | None) -> str:
    """A one-line, human summary such as ``Sent broadcast "Spring picks"``."""
    rtype, verb = action.split(".", 1)
    noun = _NOUN[rtype]
    name = f' "{resource_name}"' if resource_name else ""
    if verb == "login":
        return f"Signed in{name and ' as' + name}"
    if verb == "logout":
        return f"Signed out{name and ' as' + name}"
    if action == "api_key.login_failed":
        return f"Refused revoked API key{name}"
    if verb == "login_failed":
        return f"Failed sign-in{name and ' as' + name}"
    return f"{_PAST[verb]} {noun}{name}"
