"""A broadcast's lifecycle, one table for the API, the services and the dashboard: what went out to anyone is
never deleted (its delivery records say who was sent what), it is archived, which releases its list — and
every refusal says why and what to do instead."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage

import httpx
import pytest
from sqlalchemy import func, select

from activitylog.db.models import Broadcast, BroadcastStatus, Delivery
from activitylog.services import dispatcher
from activitylog.services.broadcasts import LIFECYCLE, allowed, refusal
from conftest import Tenant

V1 = "/api/v1"


class Quiet:
    """Delivers nowhere: only the dispatcher's bookkeeping matters here."""

    def send(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


def _sent_broadcast(tenant: Tenant, api: httpx.Client, readers: int = 2) -> tuple[str, str]:
    """A list of ``readers`` contacts and a broadcast the dispatcher sent to them: (list id, broadcast id)."""
    list_id = api.post(f"{V1}/lists", json={"name": "Customers"}).json()["id"]
    rows = [{"email": f"reader{i}@example.com"} for i in range(readers)]
    assert api.post(f"{V1}/lists/{list_id}/contacts/import", json=rows).status_code == 200
    body = {"name": "Spring picks", "subject": "Hi", "from_email": "news@example.com", "list_id": list_id}
    bid = api.post(f"{V1}/broadcasts", json=body).json()["id"]
    assert api.post(f"{V1}/broadcasts/{bid}/send").status_code == 200
    db = tenant.server.db.for_account(tenant.account_id)
    with db.reader() as session:
        broadcast = session.get(Broadcast, bid)
    assert broadcast is not None
    dispatcher.dispatch(db, broadcast, Quiet(), datetime.now(UTC))
    assert api.get(f"{V1}/broadcasts/{bid}").json()["status"] == "sent"
    return list_id, bid


def _deliveries(tenant: Tenant, bid: str) -> int:
    with tenant.server.db.for_account(tenant.account_id).reader() as session:
        return int(session.scalar(select(func.count()).where(Delivery.broadcast_id == bid)) or 0)


def _error(response: httpx.Response) -> str:
    assert response.status_code == 409, response.text
    return str(response.json()["error"]["message"])


def test_a_sent_broadcast_is_archived_not_deleted_and_then_its_list_can_go(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        list_id, bid = _sent_broadcast(tenant, api)
        refused = _error(api.delete(f"{V1}/broadcasts/{bid}"))
        assert refused.startswith("a sent broadcast cannot be deleted: its delivery records"), refused
        assert "archive it instead" in refused and "still in use" not in refused
        assert "archive" in _error(api.delete(f"{V1}/lists/{list_id}"))  # the list says what holds it
        assert "create a new broadcast" in _error(api.patch(f"{V1}/broadcasts/{bid}", json={"subject": "x"}))

        archived = api.post(f"{V1}/broadcasts/{bid}/archive")
        assert archived.status_code == 200, archived.text
        assert archived.json()["status"] == "archived" and archived.json()["list_id"] is None
        assert archived.json()["delivered"] == 2
        entry = api.get(f"{V1}/activity", params={"resource_id": bid, "limit": 1}).json()["data"][0]
        assert entry["action"] == "broadcast.archive"
        assert entry["summary"] == 'Archived broadcast "Spring picks"'
        assert entry["changes"]["status"] == {"from": "sent", "to": "archived"}
        assert entry["changes"]["list_id"] == {"from": list_id, "to": None}  # the log keeps which list

        assert "already" in _error(api.post(f"{V1}/broadcasts/{bid}/archive"))
        assert "kept for its delivery records" in _error(api.delete(f"{V1}/broadcasts/{bid}"))
        assert "send again" in _error(api.post(f"{V1}/broadcasts/{bid}/send"))
        assert api.delete(f"{V1}/lists/{list_id}").status_code == 204
        assert api.get(f"{V1}/broadcasts/{bid}").json()["status"] == "archived"
    assert _deliveries(tenant, bid) == 2  # what was sent to whom outlives the list and its contacts


def test_a_paused_broadcast_is_deleted_only_while_it_went_out_to_nobody(tenant: Tenant) -> None:
    with tenant.key_client() as api:
        list_id, _ = _sent_broadcast(tenant, api)
        body = {"name": "Second", "subject": "Hi", "from_email": "news@example.com", "list_id": list_id}
        untouched = api.post(f"{V1}/broadcasts", json=body).json()["id"]
        for step in ("send", "pause"):
            assert api.post(f"{V1}/broadcasts/{untouched}/{step}").status_code == 200
        assert api.delete(f"{V1}/broadcasts/{untouched}").status_code == 204  # nothing went out yet

        started = api.post(f"{V1}/broadcasts", json={**body, "name": "Third"}).json()["id"]
        assert api.post(f"{V1}/broadcasts/{started}/send").status_code == 200
        with tenant.server.db.for_account(tenant.account_id).writer() as session:
            for i in range(2):  # the dispatcher got through two recipients ...
                session.add(
                    Delivery(
                        account_id=tenant.account_id,
                        broadcast_id=started,
                        email=f"reader{i}@example.com",
                        status="sent",
                        sent_at=datetime.now(UTC),
                    )
                )
            session.commit()
        assert api.post(f"{V1}/broadcasts/{started}/pause").status_code == 200  # ... before the pause
        refused = _error(api.delete(f"{V1}/broadcasts/{started}"))
        assert refused == (
            f"broadcast {started} has already gone out to 2 recipients: its delivery records say who was "
            "sent what, so it is kept: archive it instead"
        )
        stopped = api.post(f"{V1}/broadcasts/{started}/archive").json()
        assert stopped["status"] == "archived" and stopped["list_id"] is None


def test_every_refusal_says_why_and_what_to_do() -> None:
    for action, step in LIFECYCLE.items():
        for status in BroadcastStatus:
            if status in step.sources:
                continue
            message = refusal(action, status)
            assert message.startswith(f"a {status} broadcast cannot be {step.done}: "), message
            assert len(message) > len(f"a {status} broadcast cannot be {step.done}: ") + 10
    assert allowed("sent") == {"archive"}
    assert allowed("archived") == frozenset()
    assert allowed("paused") == {"update", "delete", "resume", "archive"}
    assert allowed("paused", delivered=True) == {"update", "resume", "archive"}
    assert "finish" not in allowed("sending")


@pytest.mark.parametrize("status", list(BroadcastStatus))
def test_each_status_is_declared_once_and_the_table_covers_it(status: BroadcastStatus) -> None:
    reachable = {s.to for s in LIFECYCLE.values()} | {BroadcastStatus.DRAFT}
    assert status in reachable
