"""The hash chain is exactly the contract's, and re-computes from the API output with the stdlib alone."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from activitylog.log.chain import CHAINED_FIELDS, GENESIS, canonical_json, entry_hash, format_instant
from activitylog.log.verify import _AT, _COLUMNS, _canonical_loaded, _canonical_v1
from conftest import Tenant, run_auditor_tool

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), json_values, max_size=5))
def test_canonical_json_is_compact_sorted_and_round_trips(value: dict) -> None:  # type: ignore[type-arg]
    text = canonical_json(value)
    assert json.loads(text) == value
    assert text == json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(json.loads(text)) == text


def test_hash_follows_the_contract_by_hand() -> None:
    fields = dict.fromkeys(CHAINED_FIELDS)
    fields.update(
        account_id="acc_1",
        seq=1,
        occurred_at="2026-03-14T09:26:53.589793Z",
        actor_type="system",
        actor_id="cli",
        action="list.create",
        resource_type="list",
        resource_id="lst_1",
        changes={"name": {"from": None, "to": "Zürich ✓"}},
    )
    canonical = (
        '{"account_id":"acc_1","action":"list.create","actor_id":"cli","actor_name":null,"actor_type":"system",'
        '"changes":{"name":{"from":null,"to":"Zürich ✓"}},"ip":null,'
        '"occurred_at":"2026-03-14T09:26:53.589793Z",'
        '"on_behalf_of":null,"request_id":null,"resource_id":"lst_1","resource_name":null,'
        '"resource_type":"list","seq":1,"user_agent":null}'
    )
    expected = hashlib.sha256(("0" * 64 + "\n" + canonical).encode()).hexdigest()
    assert entry_hash(GENESIS, fields) == expected


def test_chain_recomputes_from_api_output_with_stdlib_alone(tenant: Tenant, tmp_path: Path) -> None:
    with tenant.key_client() as client:
        for i in range(12):
            lst = client.post("/api/v1/lists", json={"name": f'Liste née {i} "quoted"'}).json()
            client.patch(f"/api/v1/lists/{lst['id']}", json={"name": f"Renamed {i} ✓"})
        result = run_auditor_tool("--url", tenant.server.url, "--key", tenant.key)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "OK: 27 rows verified, seq 1..27" in result.stdout  # account, owner, key + 24

        entries = sorted(
            client.get("/api/v1/activity", params={"limit": 1000}).json()["data"], key=lambda e: e["seq"]
        )
    saved = tmp_path / "entries.jsonl"
    saved.write_text("\n".join(json.dumps(e, ensure_ascii=False) for e in entries), encoding="utf-8")
    assert run_auditor_tool(str(saved)).returncode == 0

    tampered = [dict(e) for e in entries]
    tampered[5] = {**tampered[5], "ip": "203.0.113.1"}
    saved.write_text("\n".join(json.dumps(e) for e in tampered), encoding="utf-8")
    result = run_auditor_tool(str(saved))
    assert result.returncode == 1
    assert f"TAMPERED: seq {entries[5]['seq']}: hash does not match" in result.stdout

    swapped = [*entries[:3], entries[4], entries[3], *entries[5:]]
    saved.write_text("\n".join(json.dumps(e) for e in swapped), encoding="utf-8")
    result = run_auditor_tool(str(saved))
    assert result.returncode == 1 and "TAMPERED: seq 4: out of order" in result.stdout


def test_verify_endpoint(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        client.post("/api/v1/lists", json={"name": "One"})
        verdict = client.get("/api/v1/activity/verify").json()
        head = client.get("/api/v1/activity", params={"limit": 1}).json()["data"][0]
    expected = {"ok": True, "checked": head["seq"], "head": {"seq": head["seq"], "hash": head["hash"]}}
    # part 1's answer, which walk gave it, and what the retention purged (nothing yet)
    assert verdict == {**expected, "mode": "full", "purged": [], "purges": []}


# Every shape a stored cell can take: text of any code point (escapes, quotes, controls, lone surrogates,
# beyond the BMP), text that looks like the canonical form itself, NULL, and on SQLite (whose columns take
# any type) numbers and booleans in any column.
_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()))
_tricky = st.sampled_from(['"changes":0,', '","seq":1,"', '\\"changes\\":0,', "\u2028\u2029", "\x7f", ""])
_cell = st.none() | _text | _tricky | st.integers() | st.floats() | st.booleans()


@given(
    st.fixed_dictionaries(
        {name: _cell for name in CHAINED_FIELDS if name not in ("occurred_at", "changes")}
        | {"occurred_at": _text | _tricky, "changes": json_values}
    )
)
def test_verify_writes_an_entry_exactly_as_the_chain_does(fields: dict) -> None:  # type: ignore[type-arg]
    """verify writes a v1 entry's canonical JSON field by field from its row: byte for byte what
    canonical_json makes of the entry's object, so its hash is the chain's."""
    row: list[object] = [None] * len(_COLUMNS)
    for name, value in fields.items():
        row[_AT[name]] = value
    changes_text = canonical_json(fields["changes"])
    assert _canonical_v1(tuple(row), fields["occurred_at"], changes_text) == canonical_json(fields)


@given(json_values | st.lists(st.floats() | st.integers(), max_size=3))
def test_verify_encodes_parsed_changes_as_canonical_json(value: object) -> None:
    assert _canonical_loaded(value) == canonical_json(value)
    assert _canonical_loaded(json.loads(canonical_json(value))) == canonical_json(
        json.loads(canonical_json(value))
    )


@given(
    st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=14))]),
    )
)
def test_an_instant_has_one_string_form_in_every_year_and_zone(instant: datetime) -> None:
    """``occurred_at`` is hashed as this string (UTC, microseconds, ``Z``): every entry ever chained was
    written by this ``strftime``, so a faster way to write it must give the same characters."""
    assert format_instant(instant) == instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
