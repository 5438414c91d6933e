"""Sending domains: the DKIM private key is a real key or a 422, and "Verify DNS" asks a real DNS server.

The DNS server is dnslib's, on loopback, answering UDP and TCP from a zone each test writes; the app reaches
it through ``ACTIVITYLOG_DNS_RESOLVER``, exactly as a deployment names its resolver.
"""

from __future__ import annotations

import base64
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dnslib import MX, QTYPE, RCODE, RR, TXT, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer

from conftest import PASSWORD, Tenant

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pem_of(key: Any) -> str:
    return str(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )


def dkim_p(key: Any) -> tuple[str, str]:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "rsa", base64.b64encode(der).decode()


@dataclass
class Zone(BaseResolver):  # type: ignore[misc]
    """Answers from ``records`` (name -> [(type, value)]); NXDOMAIN for any other name."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        qtype = QTYPE[request.q.qtype]
        self.asked.append((name, qtype))
        if name not in self.records:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        for rtype, value in self.records[name]:
            if rtype != qtype:
                continue
            if rtype == "TXT":  # character-strings are at most 255 bytes: a long record is several
                rdata: Any = TXT([value[i : i + 255] for i in range(0, len(value), 255)])
            else:
                rdata = MX(value)
            reply.add_answer(RR(request.q.qname, getattr(QTYPE, rtype), rdata=rdata, ttl=60))
        return reply

    def publish(self, name: str, rtype: str, value: str) -> None:
        self.records.setdefault(name, []).append((rtype, value))


def _free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


@pytest.fixture
def zone() -> Iterator[Zone]:
    """A DNS server on loopback for this test, named in ACTIVITYLOG_DNS_RESOLVER while it runs."""
    resolver = Zone()
    port = _free_udp_and_tcp_port()
    servers = [DNSServer(resolver, port=port, address="127.0.0.1", tcp=tcp) for tcp in (False, True)]
    for server in servers:
        server.start_thread()
    previous = os.environ.get("ACTIVITYLOG_DNS_RESOLVER")
    os.environ["ACTIVITYLOG_DNS_RESOLVER"] = f"127.0.0.1:{port}"
    try:
        yield resolver
    finally:
        if previous is None:
            del os.environ["ACTIVITYLOG_DNS_RESOLVER"]
        else:
            os.environ["ACTIVITYLOG_DNS_RESOLVER"] = previous
        for server in servers:
            server.stop()
            server.server.server_close()


def new_domain(client: httpx.Client, name: str) -> str:
    made = client.post("/api/v1/sending-domains", json={"domain": name})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def verify_entry(client: httpx.Client, domain_id: str) -> dict[str, Any]:
    got = client.get(
        "/api/v1/activity", params={"resource_id": domain_id, "action": "sending_domain.verify", "limit": "1"}
    )
    assert got.status_code == 200, got.text
    entry: dict[str, Any] = got.json()["data"][0]
    return entry


def publish_all(zone: Zone, domain: str, key: Any, selector: str = "activitylog") -> None:
    zone.publish(domain, "TXT", "v=spf1 include:_spf.example.net -all")
    zone.publish(domain, "TXT", "google-site-verification=unrelated")
    zone.publish(f"bounce.{domain}", "TXT", "v=spf1 include:_spf.example.net -all")
    zone.publish(f"bounce.{domain}", "MX", f"mx.{domain}")
    k, p = dkim_p(key)
    zone.publish(f"{selector}._domainkey.{domain}", "TXT", f"v=DKIM1; k={k}; p={p}")


# ---- item 14: the key ----
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("not a key", "not a PEM private key"),
        ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", "not a readable"),
        (
            ec.generate_private_key(ec.SECP256R1())
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode(),
            "RSA or Ed25519",
        ),
        (
            ed25519.Ed25519PrivateKey.generate()
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
            .decode(),
            "encrypted",
        ),
    ],
    ids=["garbage", "damaged", "ec-key", "encrypted"],
)
def test_a_dkim_key_that_is_no_usable_key_is_a_422_naming_the_field(
    tenant: Tenant, value: str, says: str
) -> None:
    with tenant.key_client() as client:
        domain_id = new_domain(client, "keys.example.com")
        before = client.get("/api/v1/activity", params={"limit": "1"}).json()["data"][0]["seq"]
        r = client.patch(f"/api/v1/sending-domains/{domain_id}", json={"dkim_private_key": value})
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["field"] == "dkim_private_key" and says in error["message"], error
        assert client.get(f"/api/v1/sending-domains/{domain_id}").json()["has_dkim_private_key"] is False
        assert client.get("/api/v1/activity", params={"limit": "1"}).json()["data"][0]["seq"] == before


def test_a_pem_whose_line_breaks_were_lost_is_read_and_the_same_key_again_is_no_change(
    tenant: Tenant, zone: Zone
) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    flattened = " ".join(pem_of(key).split("\n"))  # what a one-line field makes of a pasted PEM
    with tenant.key_client() as client:
        domain_id = new_domain(client, "flat.example.com")
        r = client.patch(f"/api/v1/sending-domains/{domain_id}", json={"dkim_private_key": flattened})
        assert r.status_code == 200 and r.json()["has_dkim_private_key"] is True, r.text
        entries = client.get("/api/v1/activity", params={"resource_id": domain_id}).json()["data"]
        again = client.patch(f"/api/v1/sending-domains/{domain_id}", json={"dkim_private_key": pem_of(key)})
        assert again.status_code == 200
        assert len(client.get("/api/v1/activity", params={"resource_id": domain_id}).json()["data"]) == len(
            entries
        ), "the same key in its proper form is no change"
        assert entries[0]["changes"]["dkim_private_key"]["to"] == "[redacted]"
        publish_all(zone, "flat.example.com", key)
        client.patch(f"/api/v1/sending-domains/{domain_id}", json={"return_path": "bounce.flat.example.com"})
        assert client.post(f"/api/v1/sending-domains/{domain_id}/verify").json()["status"] == "verified"


def test_the_dashboard_takes_a_pem_in_a_textarea(tenant: Tenant, zone: Zone) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with tenant.key_client() as api:
        domain_id = new_domain(api, "pasted.example.com")
    client = httpx.Client(base_url=tenant.server.url, timeout=30, follow_redirects=True)
    assert (
        client.post("/sign-in", data={"email": tenant.owner_email, "password": PASSWORD}).status_code == 200
    )
    page = client.get(f"/sending-domains/{domain_id}")
    assert re.search(r'<textarea[^>]*name="dkim_private_key"', page.text), "a PEM keeps its line breaks"
    assert not re.search(r'<input[^>]*name="dkim_private_key"', page.text)
    token = CSRF.search(page.text)
    assert token
    form = {
        "csrf_token": token.group(1),
        "dkim_selector": "activitylog",
        "dkim_private_key": pem_of(key).replace("\n", "\r\n"),  # as a browser submits a textarea
        "return_path": "bounce.pasted.example.com",
        "tracking_domain": "",
    }
    saved = client.post(f"/sending-domains/{domain_id}", data=form)
    assert saved.status_code == 200 and "Saved." in saved.text, saved.text[:3000]
    bad = client.post(f"/sending-domains/{domain_id}", data={**form, "dkim_private_key": "not a key"})
    assert bad.status_code == 422 and "dkim_private_key:" in bad.text
    # The key as stored is the one pasted: its public half is what DNS must publish, and then it verifies.
    publish_all(zone, "pasted.example.com", key)
    verified = client.post(
        f"/sending-domains/{domain_id}/actions/verify", data={"csrf_token": token.group(1)}
    )
    assert verified.status_code == 200, verified.text[:3000]
    page = client.get(f"/sending-domains/{domain_id}")
    assert "DNS records" in page.text and "every record holds" in page.text, page.text
    client.close()


# ---- item 13: the DNS checks ----
def test_verify_asks_dns_and_verifies_only_when_every_record_holds(tenant: Tenant, zone: Zone) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    domain = "news.example.org"
    with tenant.key_client() as client:
        domain_id = new_domain(client, domain)
        r = client.patch(
            f"/api/v1/sending-domains/{domain_id}",
            json={"dkim_private_key": pem_of(key), "return_path": f"bounce.{domain}"},
        )
        assert r.status_code == 200, r.text

        # Nothing published: failed, and each record says why.
        r = client.post(f"/api/v1/sending-domains/{domain_id}/verify")
        assert r.status_code == 200 and r.json()["status"] == "failed", r.text
        checks = verify_entry(client, domain_id)["changes"]["dns"]["to"]
        assert set(checks) == {"spf", "dkim", "return_path"}
        assert not any(c["ok"] for c in checks.values())
        assert "no SPF record" in checks["spf"]["detail"] and checks["spf"]["name"] == f"bounce.{domain}"
        assert "no DKIM key record" in checks["dkim"]["detail"]
        assert checks["dkim"]["name"] == f"activitylog._domainkey.{domain}"
        assert "no MX record" in checks["return_path"]["detail"]
        assert (f"activitylog._domainkey.{domain}", "TXT") in zone.asked

        # Everything published, but the DKIM record holds another key: still failed, for that reason only.
        publish_all(zone, domain, ed25519.Ed25519PrivateKey.generate())
        r = client.post(f"/api/v1/sending-domains/{domain_id}/verify")
        assert r.json()["status"] == "failed"
        checks = verify_entry(client, domain_id)["changes"]["dns"]["to"]
        assert checks["spf"]["ok"] and checks["return_path"]["ok"] and not checks["dkim"]["ok"]
        assert "not the public half" in checks["dkim"]["detail"]

        # The right key: verified, with the entry saying what each record holds.
        zone.records[f"activitylog._domainkey.{domain}"] = []
        k, p = dkim_p(key)
        zone.publish(f"activitylog._domainkey.{domain}", "TXT", f"v=DKIM1; k={k}; p={p}")
        r = client.post(f"/api/v1/sending-domains/{domain_id}/verify")
        assert r.status_code == 200 and r.json()["status"] == "verified", r.text
        assert r.json()["verified_at"] is not None
        entry = verify_entry(client, domain_id)
        assert entry["changes"]["status"] == {"from": "failed", "to": "verified"}
        assert all(c["ok"] for c in entry["changes"]["dns"]["to"].values())
        assert entry["changes"]["dns"]["to"]["return_path"]["detail"] == f"bounces go to mx.{domain}"

        # The tracking domain is no record the checks read: changing it keeps the domain verified.
        r = client.patch(f"/api/v1/sending-domains/{domain_id}", json={"tracking_domain": f"t.{domain}"})
        assert r.status_code == 200 and r.json()["status"] == "verified", r.text
        changed = client.get("/api/v1/activity", params={"action": "sending_domain.update", "limit": 1})
        assert changed.json()["data"][0]["changes"] == {
            "tracking_domain": {"from": None, "to": f"t.{domain}"}
        }
        # A DNS-facing one sends it back to pending.
        r = client.patch(f"/api/v1/sending-domains/{domain_id}", json={"dkim_selector": "s2"})
        assert r.json()["status"] == "pending" and r.json()["verified_at"] is None
        client.patch(f"/api/v1/sending-domains/{domain_id}", json={"dkim_selector": "activitylog"})

        # Two SPF policies are an error for every receiver: verifying again now fails.
        zone.publish(f"bounce.{domain}", "TXT", "v=spf1 -all")
        r = client.post(f"/api/v1/sending-domains/{domain_id}/verify")
        assert r.json()["status"] == "failed" and r.json()["verified_at"] is None
        assert "2 SPF records" in verify_entry(client, domain_id)["changes"]["dns"]["to"]["spf"]["detail"]


def test_a_return_path_outside_the_domain_and_a_missing_key_fail_with_reasons(
    tenant: Tenant, zone: Zone
) -> None:
    domain = "shop.example.net"
    with tenant.key_client() as client:
        domain_id = new_domain(client, domain)
        client.patch(f"/api/v1/sending-domains/{domain_id}", json={"return_path": "bounce.elsewhere.example"})
        zone.publish("bounce.elsewhere.example", "TXT", "v=spf1 -all")
        zone.publish("bounce.elsewhere.example", "MX", "mx.elsewhere.example")
        assert client.post(f"/api/v1/sending-domains/{domain_id}/verify").json()["status"] == "failed"
        checks = verify_entry(client, domain_id)["changes"]["dns"]["to"]
        assert checks["spf"]["ok"]
        assert "no DKIM private key is set" in checks["dkim"]["detail"]
        assert "subdomain" in checks["return_path"]["detail"]


def test_an_unreachable_resolver_fails_the_checks_and_says_so(tenant: Tenant, zone: Zone) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as idle:  # bound, never answers
        idle.bind(("127.0.0.1", 0))
        os.environ["ACTIVITYLOG_DNS_RESOLVER"] = f"127.0.0.1:{idle.getsockname()[1]}"
        with tenant.key_client() as client:
            domain_id = new_domain(client, "quiet.example.com")
            r = client.post(f"/api/v1/sending-domains/{domain_id}/verify")
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    with tenant.key_client() as client:
        checks = verify_entry(client, domain_id)["changes"]["dns"]["to"]
    for record in ("spf", "return_path"):
        assert checks[record]["detail"] == "the DNS lookup failed: no answer from the resolver within 3 s"
    assert "no DKIM private key is set" in checks["dkim"]["detail"]  # nothing to look up without a key


def test_the_domain_page_shows_each_record_s_result(tenant: Tenant, zone: Zone) -> None:
    with tenant.key_client() as api:
        domain_id = new_domain(api, "page.example.com")
    zone.publish("page.example.com", "TXT", "v=spf1 mx -all")
    client = httpx.Client(base_url=tenant.server.url, timeout=30, follow_redirects=True)
    client.post("/sign-in", data={"email": tenant.owner_email, "password": PASSWORD})
    page = client.get(f"/sending-domains/{domain_id}")
    token = CSRF.search(page.text)
    assert token and "DNS records" not in page.text  # never checked yet
    r = client.post(f"/sending-domains/{domain_id}/actions/verify", data={"csrf_token": token.group(1)})
    assert r.status_code == 200
    page = client.get(f"/sending-domains/{domain_id}")
    client.close()
    table = page.text[page.text.index("DNS records") :]
    assert "not verified" in table
    for label, result in (("SPF", "OK"), ("DKIM", "Failed"), ("Return path", "Failed")):
        assert re.search(rf"<th scope=\"row\">{label}</th>.*?>{result}<", table, re.DOTALL), label
    assert "v=spf1 mx -all" in table and "no DKIM private key is set" in table and "no MX record" in table
