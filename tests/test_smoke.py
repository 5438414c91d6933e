from conftest import Tenant


def test_create_list_is_logged(tenant: Tenant) -> None:
    with tenant.key_client() as client:
        r = client.post("/api/v1/lists", json={"name": "Newsletter"})
        assert r.status_code == 201, r.text
        page = client.get("/api/v1/activity", params={"limit": 1}).json()
    entry = page["data"][0]
    assert entry["action"] == "list.create"
    assert entry["actor"] == {"type": "api_key", "id": tenant.key_id, "name": "Test key"}
    assert entry["changes"] == {"name": {"from": None, "to": "Newsletter"}}
