"""The interactive docs work without internet, offer an Authorize button, and describe every parameter."""

from __future__ import annotations

import re
from typing import Any

import httpx

from conftest import Server


def anonymous(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30)


def test_the_docs_pages_load_every_asset_from_this_server(server: Server) -> None:
    with anonymous(server) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page)
            assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
            sources = re.findall(r'(?:src|href)="([^"]+)"', html.text)
            assert sources, html.text
            for source in sources:
                assert source.startswith("/"), f"{page} loads {source} from elsewhere"
                asset = client.get(source)
                assert asset.status_code == 200, source
                assert len(asset.content) > 1000, source
            assert "/openapi.json" in html.text
        bundle = client.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.headers["content-type"].startswith(("application/javascript", "text/javascript"))


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]


def test_the_schema_declares_both_ways_to_authenticate(server: Server) -> None:
    with anonymous(server) as client:
        schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiKey"]["type"] == "http" and schemes["apiKey"]["scheme"] == "bearer"
    assert schemes["session"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "activitylog_session",
        "description": schemes["session"]["description"],
    }
    assert "X-CSRF-Token" in schemes["session"]["description"]
    operations = {(m, p): op for m, p, op in _operations(schema)}
    for key in (("GET", "/api/v1/activity"), ("POST", "/api/v1/lists"), ("POST", "/api/v1/api-keys")):
        assert {"apiKey": []} in operations[key]["security"], key
        assert {"session": []} in operations[key]["security"], key
    assert "security" not in operations[("POST", "/api/v1/session")], "signing in needs no credentials"


def test_every_parameter_is_described(server: Server) -> None:
    with anonymous(server) as client:
        schema = client.get("/openapi.json").json()
    bare = [
        f"{method} {path} {parameter['in']}:{parameter['name']}"
        for method, path, operation in _operations(schema)
        for parameter in operation.get("parameters", [])
        if not (parameter.get("description") or "").strip()
    ]
    assert bare == []
    activity = next(op for m, p, op in _operations(schema) if (m, p) == ("GET", "/api/v1/activity"))
    described = {p["name"]: p["description"] for p in activity["parameters"]}
    assert set(described) >= {"actor", "actor_type", "action", "resource_type", "resource_id", "ip"}
    assert (
        "CIDR" in described["ip"] and "inclusive" in described["since"] and "exclusive" in described["until"]
    )
