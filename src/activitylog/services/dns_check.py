"""What "Verify DNS" asks the domain's DNS, record by record.

Three checks, each with a reason a user can act on; a domain is verified only when all three hold:

- ``spf``: the envelope (return-path) domain publishes exactly one SPF policy (a TXT record ``v=spf1 …``;
  RFC 7208 §4.5 makes two of them an error for every receiver).
- ``dkim``: ``<selector>._domainkey.<domain>`` publishes a DKIM key record (RFC 6376 §3.6.1) whose public
  key is the public half of the domain's private key, of the same type, not revoked (empty ``p=``).
- ``return_path``: the envelope domain (the return path, or the domain itself when none is set) is the
  domain or a subdomain of it, so SPF aligns with the From domain for DMARC (RFC 7489 §3.1.2), and it has
  an MX record, so bounces reach someone.

Lookups go to the resolver in ``ACTIVITYLOG_DNS_RESOLVER`` (``host:port``), or the system's when unset,
through dnspython. A lookup that cannot be answered (timeout, no server) fails its check and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import dns.exception
import dns.resolver

from activitylog.config import Settings
from activitylog.errors import InvalidInput
from activitylog.services import dkim

LOOKUP_SECONDS = 3.0
"""How long one lookup may take in all (the resolver's own retries included)."""


class LookupFailed(Exception):
    """The resolver gave no answer at all (as opposed to saying there is no such record)."""


Lookup = Callable[[str, str], list[str]]
"""``(name, "TXT" | "MX") -> records`` (TXT strings joined, MX exchange names); [] when there are none."""


@dataclass(frozen=True)
class Check:
    ok: bool
    name: str  # the DNS name asked
    detail: str


def parse_resolver(setting: str) -> tuple[str, int]:
    """``host:port``, ``host`` (port 53) or ``[v6]:port``."""
    value = setting.strip()
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ACTIVITYLOG_DNS_RESOLVER: not host:port: {setting!r}")
    return host, int(port)


def resolver_lookup(settings: Settings | None = None) -> Lookup:
    """Lookups through dnspython, against the configured resolver or the system's."""
    configured = (settings or Settings()).dns_resolver
    if configured:
        resolver = dns.resolver.Resolver(configure=False)
        host, port = parse_resolver(configured)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = LOOKUP_SECONDS
    resolver.timeout = LOOKUP_SECONDS / 2

    def lookup(name: str, rdtype: str) -> list[str]:
        try:
            answer = resolver.resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.Timeout:
            raise LookupFailed(f"no answer from the resolver within {LOOKUP_SECONDS:g} s") from None
        except dns.resolver.NoNameservers:
            raise LookupFailed("the resolver could not answer (SERVFAIL or refused)") from None
        except dns.exception.DNSException as exc:
            raise LookupFailed(str(exc) or type(exc).__name__) from None
        if rdtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
        return [r.exchange.to_text(omit_final_dot=True) for r in answer]

    return lookup


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags.setdefault(name.strip().lower(), "".join(value.split()))
    return tags


def _is_spf(record: str) -> bool:
    return record.lower() == "v=spf1" or record.lower().startswith("v=spf1 ")


def check_spf(name: str, lookup: Lookup) -> Check:
    policies = [r for r in lookup(name, "TXT") if _is_spf(r)]
    if not policies:
        return Check(False, name, 'no SPF record: publish a TXT record "v=spf1 … -all"')
    if len(policies) > 1:
        return Check(False, name, f"{len(policies)} SPF records; publish exactly one (RFC 7208)")
    return Check(True, name, policies[0])


def check_dkim(domain: str, selector: str, private_key: str | None, lookup: Lookup) -> Check:
    name = f"{selector}._domainkey.{domain}"
    if private_key is None:
        return Check(False, name, "no DKIM private key is set: set the key, then publish its public half")
    try:
        kind, expected = dkim.public_record(private_key)
    except InvalidInput:
        return Check(False, name, "the stored DKIM private key cannot be read: set it again")
    records = [_tags(r) for r in lookup(name, "TXT")]
    keys = [t for t in records if "p" in t and t.get("v", "DKIM1") == "DKIM1"]
    if not keys:
        return Check(False, name, f'no DKIM key record: publish TXT "v=DKIM1; k={kind}; p={expected}"')
    if any(t["p"] == expected and t.get("k", "rsa").lower() == kind for t in keys):
        return Check(True, name, f"publishes the public half of the domain's {kind} key")
    if all(t["p"] == "" for t in keys):
        return Check(False, name, "the published key is revoked (empty p=)")
    return Check(False, name, f"the published key is not the public half of this domain's key: p={expected}")


def check_return_path(domain: str, envelope: str, lookup: Lookup) -> Check:
    if envelope != domain and not envelope.endswith("." + domain):
        return Check(False, envelope, f"not {domain} or a subdomain of it, so SPF cannot align for DMARC")
    exchanges = lookup(envelope, "MX")
    if not exchanges:
        return Check(False, envelope, "no MX record: bounces sent to this return path could not be delivered")
    return Check(True, envelope, f"bounces go to {', '.join(sorted(exchanges))}")


def check_domain(
    domain: str, selector: str, private_key: str | None, return_path: str | None, lookup: Lookup
) -> dict[str, Check]:
    """Every check, in the order shown; a lookup that fails makes its own check fail with the reason."""
    envelope = return_path or domain
    checks: dict[str, Callable[[], Check]] = {
        "spf": lambda: check_spf(envelope, lookup),
        "dkim": lambda: check_dkim(domain, selector, private_key, lookup),
        "return_path": lambda: check_return_path(domain, envelope, lookup),
    }
    names = {"spf": envelope, "dkim": f"{selector}._domainkey.{domain}", "return_path": envelope}
    results: dict[str, Check] = {}
    for record, run in checks.items():
        try:
            results[record] = run()
        except LookupFailed as exc:
            results[record] = Check(False, names[record], f"the DNS lookup failed: {exc}")
    return results


def as_changes(results: dict[str, Check]) -> dict[str, Any]:
    """The results as the entry's ``changes`` show them (and the domain page reads them back)."""
    return {record: asdict(check) for record, check in results.items()}
