"""OCSF streams: every event validated against the OCSF 1.5.0 schema as schema.ocsf.io exports it (shipped
offline by the ``ocsf-json-schema`` package, compiled to JSON Schema 2020-12 and checked by
``jsonschema_rs``), each action in the class the contract names, and the entry itself in ``raw_data`` so a
receiver can still recompute its hash."""

from __future__ import annotations

import json
from datetime import timedelta
from functools import cache
from typing import Any

import jsonschema_rs
import pytest
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.errors import Unauthorized
from activitylog.log.record import RequestContext
from activitylog.log.verify_export import entry_hash
from activitylog.relay import ocsf
from activitylog.relay.relay import StreamRelay
from activitylog.services import api_keys, auth, erasure, lists, streams, users
from factories import cli_uow, new_account
from stream_receiver import receiving

PASSWORD = "correct horse battery"


@cache
def _validator(class_uid: int, version: str = ocsf.OCSF_VERSION) -> Any:
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=version))
    return jsonschema_rs.Draft202012Validator(
        schema.get_class_schema(schema.lookup_class_name_from_uid(class_uid))
    )


def _valid(event: dict[str, Any]) -> None:
    errors = [f"{e.instance_path}: {e.message}" for e in _validator(event["class_uid"]).iter_errors(event)]
    assert not errors, errors


def _entry(action: str, **over: Any) -> dict[str, Any]:
    rtype = action.split(".")[0]
    base: dict[str, Any] = {
        "account_id": "acc_01TEST",
        "seq": 42,
        "occurred_at": "2026-12-01T10:00:00.123456Z",
        "actor": {"type": "session", "id": "usr_01A", "name": "ann@example.com"},
        "on_behalf_of": None,
        "ip": "203.0.113.9",
        "user_agent": "curl/8",
        "action": action,
        "resource": {"type": rtype, "id": f"{rtype[:3]}_01R", "name": "Thing"},
        "summary": "Did a thing",
        "changes": {},
        "request_id": "req_01X",
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
    }
    return {**base, **over}


CASES = [
    ("list.create", 6003, 1),
    ("broadcast.update", 6003, 3),
    ("contact.delete", 6003, 4),
    ("activity_log.export", 6003, 2),
    ("broadcast.send", 6003, 99),
    ("stream.pause", 6003, 99),
    ("user.create", 3001, 1),
    ("user.delete", 3001, 6),
    ("api_key.create", 3001, 1),
    ("api_key.revoke", 3001, 5),
    ("api_key.rotate", 3001, 99),
    ("user.login", 3002, 1),
    ("user.logout", 3002, 2),
    ("user.login_failed", 3002, 1),
    ("api_key.login_failed", 3002, 1),
    ("alert.raise", 2004, 1),
]


@pytest.mark.parametrize(("action", "class_uid", "activity_id"), CASES)
def test_each_action_is_a_valid_event_of_its_class(action: str, class_uid: int, activity_id: int) -> None:
    entry = _entry(action)
    event = ocsf.to_ocsf(entry)
    _valid(event)
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity_id)
    assert event["category_uid"] == class_uid // 1000
    assert event["type_uid"] == class_uid * 100 + activity_id
    assert event["time"] == 1796119200123  # 2026-12-01T10:00:00.123Z in epoch ms
    assert event["metadata"]["uid"] == "acc_01TEST:42"
    assert event["metadata"]["version"] == ocsf.OCSF_VERSION
    assert event["metadata"]["product"]["name"] == "activitylog"
    assert event["unmapped"]["hash"] == "b" * 64 and event["unmapped"]["prev_hash"] == "a" * 64
    assert json.loads(event["raw_data"]) == entry
    if class_uid != 2004:
        assert event["src_endpoint"] == {"ip": "203.0.113.9"}
        assert event["actor"]["user"]["uid"] == "usr_01A"


@pytest.mark.parametrize("version", ["1.6.0", "1.7.0", "1.8.0"])
def test_the_events_are_valid_in_later_ocsf_versions_too(version: str) -> None:
    for action, _, _ in CASES:
        event = ocsf.to_ocsf(_entry(action))
        errors = [e.message for e in _validator(event["class_uid"], version).iter_errors(event)]
        assert not errors, (action, errors)


def test_failures_roles_passwords_denials_and_alerts_carry_their_detail() -> None:
    failed = ocsf.to_ocsf(_entry("user.login_failed", changes={"locked": {"from": None, "to": True}}))
    assert failed["status_id"] == 2 and failed["status_detail"] == "locked out" and failed["severity_id"] == 2
    promoted = ocsf.to_ocsf(_entry("user.update", changes={"role": {"from": "member", "to": "admin"}}))
    demoted = ocsf.to_ocsf(_entry("user.update", changes={"role": {"from": "owner", "to": "member"}}))
    for event in (promoted, demoted):
        _valid(event)
    assert (promoted["class_uid"], promoted["activity_id"], promoted["privileges"]) == (3005, 1, ["admin"])
    assert (demoted["type_uid"], demoted["privileges"]) == (300502, ["owner"])
    password = ocsf.to_ocsf(_entry("user.update", changes={"password_hash": {"from": "[r]", "to": "[r]"}}))
    _valid(password)
    assert (password["class_uid"], password["activity_id"]) == (3001, 3)
    denied = ocsf.to_ocsf(
        _entry("list.denied", changes={"attempted": "delete", "status": 403, "reason": "role member"})
    )
    _valid(denied)
    assert (denied["activity_id"], denied["status_id"], denied["status_code"]) == (4, 2, "403")
    alert = ocsf.to_ocsf(
        _entry(
            "alert.raise",
            actor={"type": "system", "id": "alerts", "name": "activitylog alerts"},
            resource={"type": "alert", "id": "alr_01", "name": None},
            changes={"kind": {"from": None, "to": "integrity.failure"}, "seqs": {"from": None, "to": [7, 8]}},
        )
    )
    _valid(alert)
    assert alert["severity_id"] == 5 and alert["finding_info"]["types"] == ["integrity.failure"]
    assert alert["finding_info"]["related_events"] == [{"uid": "acc_01TEST:7"}, {"uid": "acc_01TEST:8"}]
    assert alert["unmapped"]["actor"]["id"] == "alerts"


def test_system_actors_without_an_address_still_validate() -> None:
    entry = _entry("list.create", ip=None, user_agent=None, request_id=None,
                   actor={"type": "system", "id": "cli", "name": None})  # fmt: skip
    event = ocsf.to_ocsf(entry)
    _valid(event)
    assert event["src_endpoint"] == {"svc_name": "activitylog"} and "http_request" not in event
    assert event["actor"]["user"] == {"uid": "cli", "type_id": 3, "type": "System"}


def test_a_real_ocsf_stream_delivers_valid_events_whose_raw_data_keeps_the_chain(db: Database) -> None:
    created = new_account(db, "OCSF")
    account, email = created.account.id, created.owner.email
    settings = Settings(database_url=db.url, stream_allow_private=True, stream_timeout_seconds=2.0)
    relay = StreamRelay(db, settings)
    try:
        with receiving() as receiver:
            body = {"name": "SIEM", "type": "webhook", "url": receiver.url, "format": "ocsf"}
            streams.create_stream(cli_uow(db, account), body, settings)
            lists.create_list(cli_uow(db, account), "Newsletter")
            user = users.create_user(
                cli_uow(db, account), email=f"m-{email}", password=PASSWORD, role="member"
            )
            users.update_user(cli_uow(db, account), user.id, {"role": "admin"})
            users.update_user(cli_uow(db, account), user.id, {"password": "another horse battery"})
            key = api_keys.create_api_key(cli_uow(db, account), name="CI", scopes=["read"])
            api_keys.rotate_api_key(cli_uow(db, account), key.key.id)
            api_keys.revoke_api_key(cli_uow(db, account), key.key.id)
            context = RequestContext(ip="198.51.100.7", user_agent="pytest")
            with pytest.raises(Unauthorized):
                auth.sign_in(db, email, "wrong horse battery", context, timedelta(hours=1))
            auth.sign_in(db, email, PASSWORD, context, timedelta(hours=1))
            expected = 10
            for _ in range(200):
                relay.run_once()
                relay.drain()
                if len(receiver.entries()) >= expected:
                    break
            events = receiver.entries()
    finally:
        relay.close()
    assert len(events) == expected
    for event in events:
        _valid(event)
    classes = [(json.loads(e["raw_data"])["action"], e["class_uid"], e["activity_id"]) for e in events]
    assert classes == [
        ("stream.create", 6003, 1),
        ("list.create", 6003, 1),
        ("user.create", 3001, 1),
        ("user.update", 3005, 1),
        ("user.update", 3001, 3),
        ("api_key.create", 3001, 1),
        ("api_key.rotate", 3001, 99),
        ("api_key.revoke", 3001, 5),
        ("user.login_failed", 3002, 1),
        ("user.login", 3002, 1),
    ]
    previous: dict[str, Any] | None = None
    for event in events:
        entry = json.loads(event["raw_data"])
        flat = {
            **entry,
            **{f"actor_{k}": v for k, v in entry["actor"].items()},
            **{f"resource_{k}": v for k, v in entry["resource"].items()},
        }
        assert entry_hash(entry["prev_hash"], flat) == entry["hash"] == event["unmapped"]["hash"]
        assert event["metadata"]["uid"] == f"{account}:{entry['seq']}"
        if previous is not None:
            assert entry["prev_hash"] == previous["hash"] and entry["seq"] == previous["seq"] + 1
        previous = entry
    signed_in = events[-1]
    assert signed_in["src_endpoint"] == {"ip": "198.51.100.7"}
    assert signed_in["http_request"] == {"user_agent": "pytest"}


def _hash_of(entry: dict[str, Any]) -> str:
    flat = {
        **entry,
        **{f"actor_{k}": v for k, v in entry["actor"].items()},
        **{f"resource_{k}": v for k, v in entry["resource"].items()},
    }
    return entry_hash(entry["prev_hash"], flat, entry.get("salts"))


def test_an_ocsf_event_of_personal_data_carries_its_salts_and_a_replay_after_erasure_carries_neither(
    db: Database,
) -> None:
    created = new_account(db, "OCSF v2")
    account = created.account.id
    address = "ada.lovelace@example.net"
    settings = Settings(database_url=db.url, stream_allow_private=True, stream_timeout_seconds=2.0)
    relay = StreamRelay(db, settings)

    def deliver(until: int) -> None:
        for _ in range(200):
            relay.run_once()
            relay.drain()
            if len(receiver.received) >= until:
                return
        raise AssertionError(f"the relay delivered {len(receiver.received)} of {until} events")

    try:
        with receiving() as receiver:
            body = {"name": "SIEM", "type": "webhook", "url": receiver.url, "format": "ocsf"}
            stream = streams.create_stream(cli_uow(db, account), body, settings).stream
            newsletter = lists.create_list(cli_uow(db, account), "Newsletter")
            values = {"email": address, "first_name": "Ada", "last_name": "Lovelace"}
            lists.create_contact(cli_uow(db, account), newsletter.id, values)
            deliver(3)
            contact_event = receiver.received[2].json["data"]
            contact_seq = json.loads(contact_event["raw_data"])["seq"]
            erasure.erase_subscriber(cli_uow(db, account), address)
            streams.replay_stream(cli_uow(db, account), stream.id, contact_seq)
            deliver(len(receiver.received) + 2)  # the erased entry again, then the erasure itself
            replayed = [r for r in receiver.received[3:] if r.id == receiver.received[2].id]
    finally:
        relay.close()

    _valid(contact_event)
    entry = json.loads(contact_event["raw_data"])
    assert entry["action"] == "contact.create" and entry["chain_version"] == 2 and entry["salts"]
    assert address in contact_event["raw_data"]  # before the erasure: the value and its salt, to recompute
    assert _hash_of(entry) == entry["hash"] == contact_event["unmapped"]["hash"]

    assert len(replayed) == 1, "the replay delivers the erased entry again, under the same webhook-id"
    again = replayed[0].json["data"]
    _valid(again)
    text = replayed[0].body.decode()
    assert address not in text and "Lovelace" not in text and '"Ada"' not in again["raw_data"]
    erased = json.loads(again["raw_data"])
    assert erased["erased"] is True and erased["seq"] == entry["seq"]
    assert _hash_of(erased) == entry["hash"] == again["unmapped"]["hash"]  # the commitment still verifies
