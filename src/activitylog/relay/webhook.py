"""Webhook delivery per Standard Webhooks 1.0: one POST per event, signed afresh on every attempt.

``webhook-signature`` is ``v1,<base64 HMAC-SHA256>`` under the secret's decoded bytes, or ``v1a,<base64
Ed25519>``, over ``"{webhook-id}.{webhook-timestamp}.{body}"``; the timestamp is this attempt's, so a
receiver's replay window holds for retries too. One pooled client for every stream (connections to a
destination are reused); each attempt has the configured timeout. The host is resolved and checked before
each attempt and the request goes to the address that was checked (DNS rebinding cannot slip in a second
answer), with the URL's host kept in ``Host`` and in TLS's server name, so certificates are checked as usual.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from activitylog import __version__
from activitylog.config import Settings
from activitylog.relay.events import Event
from activitylog.services.stream_targets import RefusedDestination, resolve_allowed

USER_AGENT = f"activitylog-streams/{__version__}"
ERROR_TEXT = 500


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    gone: bool = False  # 410: the receiver asks never to be sent to again


def signature(secret: str, signing: str, event_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{event_id}.{timestamp}.".encode() + body
    if signing == "ed25519":
        key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(secret.removeprefix("whsk_")))
        return "v1a," + base64.b64encode(key.sign(signed)).decode()
    mac = hmac.new(base64.b64decode(secret.removeprefix("whsec_")), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class WebhookSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client = httpx.Client(
            timeout=httpx.Timeout(settings.stream_timeout_seconds),
            follow_redirects=False,  # a redirect could lead anywhere, past the address check
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def _pinned(self, url: str) -> tuple[str, str, str]:
        """The URL with its host replaced by a checked address, the Host header, and the TLS name."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = resolve_allowed(host, port, allow_private=self.settings.stream_allow_private)
        addr = addresses[0]
        literal = f"[{addr}]" if addr.version == 6 else str(addr)
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        host_header = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), host_header, host

    def send(self, url: str, secret: str, signing: str, event: Event) -> Outcome:
        try:
            target, host_header, server_name = self._pinned(url)
        except RefusedDestination as exc:
            return Outcome(False, error=str(exc)[:ERROR_TEXT])
        except OSError as exc:
            return Outcome(False, error=f"cannot resolve the host: {exc}"[:ERROR_TEXT])
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": host_header,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, signing, event.id, timestamp, event.body),
        }
        try:
            response = self.client.post(
                target, content=event.body, headers=headers, extensions={"sni_hostname": server_name}
            )
        except httpx.TimeoutException:
            return Outcome(False, error=f"no answer within {self.settings.stream_timeout_seconds:g} s")
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: {exc}"[:ERROR_TEXT])
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(True, status)
        if status == 410:
            return Outcome(False, status, "410 Gone: the receiver asked to stop", gone=True)
        return Outcome(False, status, f"HTTP {status}: {response.text[:200]}"[:ERROR_TEXT])
