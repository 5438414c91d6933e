"""The closed vocabulary of the log: resource types, verbs, and which actions exist.

An action is ``<resource_type>.<verb>``; recording one outside this table is a programming error, so a typo
can never reach the log. The verb filter (``action=send``) expands through this table into an index-friendly
``action IN (...)``.
"""

from __future__ import annotations

# The summary rule lives in the auditor's verifier, which checks every exported summary against it.
from activitylog.log.verify_export import summarize as summarize

VERBS = (
    "create", "update", "delete", "schedule", "unschedule", "send", "pause", "resume", "suppress",
    "unsuppress", "enable", "disable", "revoke", "rotate", "verify", "import", "export", "archive",
    "login", "logout", "login_failed", "replay", "purge", "release", "erase", "rename", "raise",
    "acknowledge", "denied",
)  # fmt: skip

ACTIONS: dict[str, tuple[str, ...]] = {
    "account": ("create", "update"),
    "user": ("create", "update", "delete", "login", "logout", "login_failed"),
    "api_key": ("create", "revoke", "rotate", "login_failed"),  # login_failed: a revoked key was refused
    "list": ("create", "update", "delete", "import"),
    "contact": ("create", "update", "delete", "erase"),  # erase: a subscriber's personal data removed
    "segment": ("create", "update", "delete"),
    "broadcast": (
        "create",
        "update",
        "delete",
        "schedule",
        "unschedule",
        "send",
        "pause",
        "resume",
        "archive",
    ),
    "address": ("suppress", "unsuppress"),
    "sending_domain": ("create", "update", "delete", "verify"),
    "reputation_rule": ("create", "update", "delete", "enable", "disable"),
    # update: an operator accepted a restored history for signing; purge: entries past retention removed
    "activity_log": ("export", "update", "purge"),
    "stream": ("create", "update", "delete", "pause", "resume", "disable", "replay"),
    "legal_hold": ("create", "release"),
    # a user's named activity filter (the dashboard's saved views)
    "saved_view": ("create", "rename", "delete"),
    # raise: a detector found something (actor system:alerts); acknowledge: a user saw it
    "alert": ("raise", "acknowledge"),
}
# Any resource can be the target of a refused attempt (a 403 for role or scope): ``<resource_type>.denied``.
ACTIONS = {rtype: (*verbs, "denied") for rtype, verbs in ACTIONS.items()}

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
        "activity_log.purge",
        "broadcast.send",
    }
    | {f"{rtype}.denied" for rtype in ACTIONS}
)

ACTOR_TYPES = ("session", "api_key", "rule", "system")


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
