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
    "stream": "streams",
    "alert": "alerts",
}


def resource_link(resource_type: str, resource_id: str) -> str | None:
    slug = PAGES.get(resource_type)
    return f"/{slug}/{quote(resource_id, safe='')}" if slug else None


def history_link(resource_type: str, resource_id: str) -> str:
    """The log filtered to one resource: every change to it, by whom, in order."""
    return "/activity?" + urlencode({"resource_type": resource_type, "resource_id": resource_id})


# The resource an actor is: a session's user, a key, a rule (the system's workers have no page).
ACTOR_RESOURCES = {"session": "user", "api_key": "api_key", "rule": "reputation_rule"}


def actor_link(actor_type: str, actor_id: str) -> str | None:
    resource_type = ACTOR_RESOURCES.get(actor_type)
    return resource_link(resource_type, actor_id) if resource_type else None


def activity_links(resource_type: str, resource_id: str) -> list[tuple[str, str]]:
    """For a resource that acts (a user, a key, a rule): the log of what it did, and of the work done
    later on its behalf (the scheduler's sends of what it scheduled)."""
    actor_type = next((t for t, r in ACTOR_RESOURCES.items() if r == resource_type), None)
    if actor_type is None:
        return []
    noun = {"session": "user", "api_key": "key", "rule": "rule"}[actor_type]
    links = [(f"Activity by this {noun}", "/activity?" + urlencode({"actor": resource_id}))]
    if actor_type != "rule":  # a rule acts at once, never later for itself
        behalf = urlencode({"on_behalf_of": f"{actor_type}:{resource_id}"})
        links.append((f"Done on this {noun}'s behalf", f"/activity?{behalf}"))
    return links
