"""Where a request came from: the source IP (trusted-proxy rule), user agent and request id."""

from __future__ import annotations

import ipaddress
import re

from starlette.requests import Request

from activitylog.config import IPNetwork
from activitylog.ids import ulid
from activitylog.log.record import RequestContext

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_USER_AGENT = 512


def _parse_ip(value: str) -> str | None:
    """Canonical text of an address; an IPv4-mapped IPv6 address is the IPv4 address it carries. A zone
    (``fe80::1%eth0``) names an interface of the host that saw the address, meaningless anywhere else, and
    is dropped: what is logged is the address, which always fits the 45 characters the columns hold."""
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        if addr.scope_id is not None:
            addr = ipaddress.IPv6Address(addr.packed)
    return str(addr)


def _trusted(ip: str, proxies: tuple[IPNetwork, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in proxies)


def client_ip(request: Request, proxies: tuple[IPNetwork, ...]) -> str | None:
    """The socket peer, unless it is a trusted proxy: then the right-most untrusted ``X-Forwarded-For`` hop.

    Walking from the right stops a client from spoofing its address by sending its own header: only hops
    appended by proxies we trust are skipped.
    """
    peer = _parse_ip(request.client.host) if request.client else None
    if peer is None or not _trusted(peer, proxies):
        return peer
    hops = [h for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _parse_ip(hop)
        if ip is None:
            return peer  # a malformed chain is not believed
        if not _trusted(ip, proxies):
            return ip
    return peer


def request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else ulid()


def request_context(request: Request, proxies: tuple[IPNetwork, ...]) -> RequestContext:
    agent = request.headers.get("user-agent") or None
    if agent is not None:
        agent = "".join(ch if ch.isprintable() else "?" for ch in agent)[:MAX_USER_AGENT] or None
    return RequestContext(
        ip=client_ip(request, proxies), user_agent=agent, request_id=request.state.request_id
    )
