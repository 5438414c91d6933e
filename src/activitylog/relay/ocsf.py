"""OCSF 1.5.0 events from activity entries, for streams with ``format: "ocsf"``.

One event per entry, its class chosen by the action (API.md part 2, "Events"):

- sign-ins (``user.login``/``logout``/``login_failed``, ``api_key.login_failed``): Authentication 3002
- a user's role changed (``user.update`` of ``role``): User Access Management 3005
- users and API keys created, changed, revoked, deleted: Account Change 3001
- ``alert.raise``: Detection Finding 2004
- every other change to a resource: API Activity 6003

Every event has ``metadata.uid = "<account_id>:<seq>"`` (the webhook-id, so a SIEM de-duplicates on it),
``time`` in epoch milliseconds, ``type_uid = class_uid * 100 + activity_id``, the entry's ``hash`` and
``prev_hash`` in ``unmapped`` (beside the fields OCSF has no place for: the actor's type, ``on_behalf_of``,
the changes), and the entry itself, exactly as the API returns it, in ``raw_data`` — OCSF's place for the
original record, and what lets a receiver recompute the entry's hash.
The tests validate every class against the OCSF 1.5.0 schema (the ``ocsf-json-schema`` package).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from activitylog import __version__

OCSF_VERSION = "1.5.0"
PRODUCT = {"name": "activitylog", "vendor_name": "activitylog", "version": __version__}

API_ACTIVITY, ACCOUNT_CHANGE, AUTHENTICATION, USER_ACCESS, DETECTION_FINDING = 6003, 3001, 3002, 3005, 2004
CLASS_NAMES = {
    API_ACTIVITY: "API Activity",
    ACCOUNT_CHANGE: "Account Change",
    AUTHENTICATION: "Authentication",
    USER_ACCESS: "User Access Management",
    DETECTION_FINDING: "Detection Finding",
}
CATEGORY_NAMES = {2: "Findings", 3: "Identity & Access Management", 6: "Application Activity"}
SEVERITIES = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
OTHER = 99
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# activity ids per class (OCSF 1.5.0)
_API_VERBS = {"create": (1, "Create"), "import": (1, "Create"), "export": (2, "Read"),
              "update": (3, "Update"), "rename": (3, "Update"), "delete": (4, "Delete"),
              "purge": (4, "Delete"), "erase": (4, "Delete")}  # fmt: skip
_ACCOUNT_VERBS = {"create": (1, "Create"), "revoke": (5, "Disable"), "delete": (6, "Delete")}
_SIGN_INS = {"user.login": (1, "Logon"), "user.logout": (2, "Logoff"), "user.login_failed": (1, "Logon"),
             "api_key.login_failed": (1, "Logon")}  # fmt: skip
_ROLE_RANK = {"member": 1, "admin": 2, "owner": 3}
# Detection Finding severities by alert kind; a kind not listed is Medium.
ALERT_SEVERITY = {"integrity.failure": 5, "signin.spray": 4, "signin.failures": 4, "burst.delete": 4,
                  "burst.export": 4, "credential.new_ip": 3, "credential.dormant": 3,
                  "sensitive.change": 3}  # fmt: skip


def epoch_ms(instant: str) -> int:
    """``2026-12-01T10:00:00.123456Z`` as OCSF's timestamp_t (milliseconds since the epoch)."""
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _to(change: Any) -> Any:
    """The new value of a ``{"from", "to"}`` change (or the value itself)."""
    return change.get("to") if isinstance(change, dict) and "to" in change else change


def _user(party: dict[str, Any]) -> dict[str, Any]:
    """An OCSF user for an actor or a resource: users are users, API keys credentials, the rest system."""
    kind = party["type"]
    user: dict[str, Any] = {"uid": party["id"]}
    if party.get("name"):
        user["name"] = party["name"]
    if kind in ("session", "user"):
        user["type_id"], user["type"] = 1, "User"
    elif kind == "api_key":
        user.update(type_id=OTHER, type="API key", credential_uid=party["id"])
    elif kind == "system":
        user["type_id"], user["type"] = 3, "System"
    else:
        user.update(type_id=OTHER, type=kind.replace("_", " ").capitalize())
    return user


def _classify(entry: dict[str, Any]) -> tuple[int, int, str]:
    """``(class_uid, activity_id, activity_name)`` for an entry's action."""
    action = entry["action"]
    rtype, _, verb = action.partition(".")
    if action in _SIGN_INS:
        return (AUTHENTICATION, *_SIGN_INS[action])
    if action == "alert.raise":
        return DETECTION_FINDING, 1, "Create"
    if rtype in ("user", "api_key") and verb != "denied":
        changes = entry["changes"] if isinstance(entry["changes"], dict) else {}
        if action == "user.update" and "role" in changes:
            role = changes["role"] if isinstance(changes["role"], dict) else {}
            raised = _ROLE_RANK.get(str(role.get("to")), 0) >= _ROLE_RANK.get(str(role.get("from")), 0)
            return (USER_ACCESS, 1, "Assign Privileges") if raised else (USER_ACCESS, 2, "Revoke Privileges")
        if action == "user.update" and any("password" in name for name in changes):
            return ACCOUNT_CHANGE, 3, "Password Change"
        if verb in _ACCOUNT_VERBS:
            return (ACCOUNT_CHANGE, *_ACCOUNT_VERBS[verb])
        return ACCOUNT_CHANGE, OTHER, verb.replace("_", " ").capitalize()
    if verb == "denied":
        attempted = str(_to((entry["changes"] or {}).get("attempted")) or "")
        activity_id, name = _API_VERBS.get(attempted, (OTHER, attempted.capitalize() or "Other"))
        return API_ACTIVITY, activity_id, name
    activity_id, name = _API_VERBS.get(verb, (OTHER, verb.replace("_", " ").capitalize()))
    return API_ACTIVITY, activity_id, name


def _failed(entry: dict[str, Any]) -> bool:
    return bool(entry["action"].endswith((".login_failed", ".denied")))


def to_ocsf(entry: dict[str, Any]) -> dict[str, Any]:
    """The OCSF event of an entry as ``GET /api/v1/activity/{seq}`` returns it."""
    class_uid, activity_id, activity_name = _classify(entry)
    category_uid = class_uid // 1000
    account_id, seq, action = entry["account_id"], entry["seq"], entry["action"]
    actor, resource = entry["actor"], entry["resource"]
    time_ms = epoch_ms(entry["occurred_at"])
    raw = json.dumps(entry, separators=(",", ":"), ensure_ascii=False)
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": dict(PRODUCT),
        "uid": f"{account_id}:{seq}",
        "sequence": seq,
        "tenant_uid": account_id,
        "event_code": action,
        "log_name": "activity",
        "original_time": entry["occurred_at"],
        "logged_time": time_ms,
    }
    if entry.get("request_id"):
        metadata["correlation_uid"] = entry["request_id"]
    if class_uid == DETECTION_FINDING:
        severity_id = ALERT_SEVERITY.get(str(_to((entry["changes"] or {}).get("kind"))), 3)
    else:
        severity_id = 2 if _failed(entry) else 1
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": CLASS_NAMES[class_uid],
        "category_uid": category_uid,
        "category_name": CATEGORY_NAMES[category_uid],
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity_id,
        "type_name": f"{CLASS_NAMES[class_uid]}: {activity_name}",
        "severity_id": severity_id,
        "severity": SEVERITIES[severity_id],
        "time": time_ms,
        "message": entry["summary"],
        "metadata": metadata,
    }
    unmapped: dict[str, Any] = {
        "seq": seq,
        "action": action,
        "actor_type": actor["type"],
        "on_behalf_of": entry.get("on_behalf_of"),
        "resource_type": resource["type"],
        "changes": entry["changes"],
        "prev_hash": entry["prev_hash"],
        "hash": entry["hash"],
    }
    if class_uid == DETECTION_FINDING:
        _finding(event, entry, unmapped)
    else:
        event["status_id"], event["status"] = (2, "Failure") if _failed(entry) else (1, "Success")
        event["actor"] = {"user": _user(actor)}
        if entry.get("ip"):
            event["src_endpoint"] = {"ip": entry["ip"]}
        elif class_uid == API_ACTIVITY:  # required there: the change came from within the service
            event["src_endpoint"] = {"svc_name": "activitylog"}
        if entry.get("user_agent"):
            event["http_request"] = {"user_agent": entry["user_agent"]}
        if class_uid == API_ACTIVITY:
            api: dict[str, Any] = {"operation": action, "service": {"name": "activitylog"}}
            if entry.get("request_id"):
                api["request"] = {"uid": entry["request_id"]}
            event["api"] = api
            event["resources"] = [_resource(resource)]
            if action.endswith(".denied"):
                changes = entry["changes"] if isinstance(entry["changes"], dict) else {}
                if _to(changes.get("status")) is not None:
                    event["status_code"] = str(_to(changes["status"]))
                if _to(changes.get("reason")):
                    event["status_detail"] = str(_to(changes["reason"]))
        else:
            event["user"] = _user(resource)
        if class_uid == USER_ACCESS:
            role = entry["changes"]["role"]
            event["privileges"] = [str(role.get("to") if activity_id == 1 else role.get("from"))]
            event["resources"] = [_resource(resource)]
        if class_uid == AUTHENTICATION:  # the service signed in to (OCSF: a service or a destination)
            event["service"] = {"name": "activitylog"}
        if class_uid == AUTHENTICATION and _failed(entry):
            locked = (entry["changes"] or {}).get("locked")
            event["status_detail"] = "locked out" if _to(locked) else "refused"
    event["unmapped"] = unmapped
    event["raw_data"] = raw
    event["raw_data_size"] = len(raw.encode("utf-8"))
    return event


def _resource(resource: dict[str, Any]) -> dict[str, Any]:
    out = {"uid": resource["id"], "type": resource["type"]}
    if resource.get("name"):
        out["name"] = resource["name"]
    return out


def _finding(event: dict[str, Any], entry: dict[str, Any], unmapped: dict[str, Any]) -> None:
    """An ``alert.raise`` entry as a Detection Finding: the alert is the finding; the entries that
    triggered it are its related events (by their ``metadata.uid``)."""
    changes = entry["changes"] if isinstance(entry["changes"], dict) else {}
    kind = _to(changes.get("kind"))
    info: dict[str, Any] = {"uid": entry["resource"]["id"], "title": entry["summary"]}
    if entry["resource"].get("name"):
        info["desc"] = entry["resource"]["name"]
    if kind:
        info["types"] = [str(kind)]
    info["created_time"] = event["time"]
    seqs = _to(changes.get("seqs"))
    if isinstance(seqs, list):
        info["related_events"] = [{"uid": f"{entry['account_id']}:{s}"} for s in seqs]
    event["finding_info"] = info
    event["is_alert"] = True
    event["status_id"], event["status"] = 1, "New"
    # Detection Finding has no actor nor source endpoint: who and where stay in unmapped
    unmapped["actor"] = entry["actor"]
    unmapped["ip"] = entry.get("ip")
    unmapped["user_agent"] = entry.get("user_agent")
