"""Where a log entry's resource lives in the dashboard, and the history view of any resource."""

from __future__ import annotations

from urllib.parse import quote, urlencode

PAGES = {
    "user": "users",
    "api_key": "api-keys",
    "list": "lists",
    "contact": "contacts",
    "segment": "segments",
    "broadcast": "broadcasts",
    "address": "suppressions",
    "sending_domain": "sending-domains",
    "reputation_rule": "reputation-rules",
}


def resource_link(resource_type: str, resource_id: str) -> str | None:
    slug = PAGES.get(resource_type)
    return f"/{slug}/{quote(resource_id, safe='')}" if slug else None


def history_link(resource_type: str, resource_id: str) -> str:
    """The log filtered to one resource: every change to it, by whom, in order."""
    return "/activity?" + urlencode({"resource_type": resource_type, "resource_id": resource_id})
