"""Where a stream may deliver: http(s) URLs and NATS subjects, never (unless the operator allows it) an
address inside the service's own networks.

A webhook URL is checked twice: when the stream is set up (its literal host, and what the host resolves to
then) and at every delivery, against the addresses the host resolves to at that moment — a name that
resolved to a public address yesterday may resolve to 127.0.0.1 today (DNS rebinding). The relay then
connects to the address it checked, not to a second lookup's answer.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from activitylog.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2000
_SUBJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$")


class RefusedDestination(Exception):
    """The destination resolves to an address streams may not reach."""


def refused_address(addr: IPAddress) -> bool:
    """Private, loopback, link-local, multicast, reserved or otherwise not globally routable."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return not addr.is_global or addr.is_multicast


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """The URL if a webhook may be sent to it; InvalidInput naming ``url`` otherwise."""
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidInput("url", f"too long (at most {MAX_URL} characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput("url", f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url", "must be an http:// or https:// URL")
    if not parts.hostname:
        raise InvalidInput("url", "must name a host")
    if parts.username or parts.password:
        raise InvalidInput("url", "must not carry credentials; the stream signs its requests instead")
    if any(not ch.isprintable() or ch.isspace() for ch in url):
        raise InvalidInput("url", "must not contain spaces or control characters")
    if allow_private:
        return url
    host = parts.hostname
    literal = _literal(host)
    if literal is not None:
        if refused_address(literal):
            raise InvalidInput("url", f"{host} is a private, loopback or link-local address")
        return url
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        raise InvalidInput("url", f"{host} names this machine or a private network")
    if resolve:
        try:
            resolve_allowed(host, port or (443 if parts.scheme == "https" else 80), allow_private=False)
        except RefusedDestination as exc:
            raise InvalidInput("url", str(exc)) from None
        except OSError:
            pass  # not resolvable now: checked again at each delivery
    return url


def check_subject(subject: str) -> str:
    """A NATS subject prefix: dot-separated tokens, no wildcards (the account and action are appended)."""
    if not _SUBJECT.match(subject):
        raise InvalidInput("subject", "dot-separated tokens of letters, digits, - and _ (no wildcards)")
    return subject


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """The addresses ``host`` resolves to now, if every one may be reached; RefusedDestination if any
    may not (a name with one private answer among public ones is refused whole); OSError if it does
    not resolve."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(
            dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos)
        )
    if not allow_private:
        for addr in addresses:
            if refused_address(addr):
                raise RefusedDestination(
                    f"{host} resolves to {addr}, a private, loopback or link-local address"
                )
    return addresses
