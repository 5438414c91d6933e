""" "What did this key send?": the ``on_behalf_of`` filter on every surface, and the filters declared once
(issue 14 item 6, issue 15 item 1).

The scheduler's send is done by ``system:scheduler`` on behalf of whoever scheduled it; filtering by that
key's id must find it (API, export and its manifest, the CLI), and each surface's filters must be the ones
``log/filters.py`` declares, with its descriptions.
"""

from __future__ import annotations

import csv
import io
import json
import re
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from activitylog.db.base import Database
from activitylog.log.filters import FILTERS
from activitylog.services import scheduler
from conftest import Tenant
from test_cli import cli


def scheduled_send(db: Database, tenant: Tenant, api: httpx.Client) -> tuple[str, int, int]:
    """A broadcast the tenant's key schedules, then the scheduler sends: (broadcast id, schedule seq,
    send seq)."""
    listing = api.post("/api/v1/lists", json={"name": "Behalf"}).json()
    api.post(f"/api/v1/lists/{listing['id']}/contacts", json={"email": "behalf@example.com"})
    broadcast = api.post(
        "/api/v1/broadcasts",
        json={"name": "Later", "subject": "Hi", "from_email": "news@example.com", "list_id": listing["id"]},
    ).json()
    send_at = datetime.now(UTC) + timedelta(seconds=1)
    scheduled = api.post(
        f"/api/v1/broadcasts/{broadcast['id']}/schedule", json={"send_at": send_at.isoformat()}
    )
    assert scheduled.status_code == 200, scheduled.text
    scheduler.start_due(db, send_at + timedelta(seconds=2))
    entries = api.get("/api/v1/activity", params={"resource_id": broadcast["id"]}).json()["data"]
    by_action = {e["action"]: e["seq"] for e in entries}
    return broadcast["id"], by_action["broadcast.schedule"], by_action["broadcast.send"]


def test_on_behalf_of_finds_the_schedulers_sends_for_a_key(db: Database, tenant: Tenant) -> None:
    with tenant.key_client() as api:
        broadcast_id, _, send_seq = scheduled_send(db, tenant, api)
        for value in (f"api_key:{tenant.key_id}", tenant.key_id, f"session:usr_x,{tenant.key_id}"):
            found = api.get("/api/v1/activity", params={"on_behalf_of": value})
            assert found.status_code == 200, found.text
            assert [e["seq"] for e in found.json()["data"]] == [send_seq], value
        (send,) = api.get("/api/v1/activity", params={"on_behalf_of": tenant.key_id}).json()["data"]
        assert send["actor"]["id"] == "scheduler" and send["on_behalf_of"] == f"api_key:{tenant.key_id}"
        # by the key itself: what it did, not what was done for it
        assert send_seq not in [
            e["seq"] for e in api.get("/api/v1/activity", params={"actor": tenant.key_id}).json()["data"]
        ]
        assert api.get("/api/v1/activity", params={"on_behalf_of": f"session:{tenant.key_id}"}).json() == {
            "data": [],
            "next_cursor": None,
        }
        refused = api.get("/api/v1/activity", params={"on_behalf_of": "robot:key_1"})
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "on_behalf_of", refused.text
        exported = api.get("/api/v1/activity/export", params={"on_behalf_of": tenant.key_id})
        assert exported.status_code == 200, exported.text
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [int(r["seq"]) for r in rows] == [send_seq] and rows[0]["resource_id"] == broadcast_id
        as_of = exported.headers["X-Activity-As-Of-Seq"]
        manifest = api.get(
            "/api/v1/activity/export/manifest", params={"on_behalf_of": tenant.key_id, "as_of_seq": as_of}
        )
        assert manifest.status_code == 200, manifest.text
        assert manifest.json()["filter"] == {"on_behalf_of": tenant.key_id}
        export_entry = api.get("/api/v1/activity", params={"action": "activity_log.export"}).json()["data"][0]
        assert export_entry["changes"]["filter"]["to"] == {"on_behalf_of": tenant.key_id}


def test_the_cli_takes_on_behalf_of(db: Database, tenant: Tenant, tmp_path: Path) -> None:
    with tenant.key_client() as api:
        _, _, send_seq = scheduled_send(db, tenant, api)
    out = tmp_path / "behalf.jsonl"
    run = cli(
        db,
        "log",
        "--account",
        tenant.account_id,
        "--on-behalf-of",
        tenant.key_id,
        "--format",
        "jsonl",
        "-o",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [send_seq]
    bad = cli(db, "log", "--account", tenant.account_id, "--on-behalf-of", "robot:x")
    assert bad.returncode != 0 and "--on-behalf-of" in bad.stderr


def test_every_surface_takes_the_declared_filters(db: Database, tenant: Tenant) -> None:
    """One declaration: the API's parameters and their descriptions, the CLI's options, the dashboard's
    form fields and labels, and the reference in docs/api.md all list exactly the filters of the table."""
    names = [spec.name for spec in FILTERS]
    with httpx.Client(base_url=tenant.server.url) as anonymous:
        schema = anonymous.get("/openapi.json").json()
    for path in ("/api/v1/activity", "/api/v1/activity/export", "/api/v1/activity/export/manifest"):
        described = {p["name"]: p.get("description") for p in schema["paths"][path]["get"]["parameters"]}
        assert {n: described.get(n) for n in names} == {s.name: s.description for s in FILTERS}, path
    usage = cli(db, "log", "--help").stdout
    for spec in FILTERS:
        assert spec.option in usage, spec.option
    browser = tenant.session_client()
    with closing(browser):
        form = browser.get("/activity").text
    for spec in FILTERS:
        assert re.search(rf'name="{spec.name}"', form), spec.name
        assert f">{spec.label}</label>" in form, spec.label
    reference = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text(encoding="utf-8")
    table = reference[reference.index("## Reading the log") :]
    for spec in FILTERS:
        assert f"`{spec.name}`" in table, spec.name
