"""Typed settings, read from the environment with the ``ACTIVITYLOG_`` prefix."""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACTIVITYLOG_", extra="ignore")

    database_url: str = "sqlite:///activitylog.db"
    """``sqlite:///path.db`` (embedded default) or ``postgresql://...`` (psycopg 3)."""

    trusted_proxies: str = ""
    """Comma-separated IPs/CIDRs whose ``X-Forwarded-For`` header is believed."""

    session_ttl_hours: int = 12
    """How long a dashboard session lives without being used."""

    secure_cookies: bool = False
    """Mark the session cookie ``Secure`` (set it when served over HTTPS)."""

    signing_key: str = ""
    """Base64 of a 32-byte Ed25519 seed that signs checkpoints; else the key file below is used."""

    signing_key_file: str = ""
    """Where the signing key lives (default: ``signing.key`` in the key directory)."""

    key_dir: str = ""
    """The key directory: the signing key and the signer's memory of what it signed (default:
    ``$XDG_STATE_HOME/activitylog``, i.e. ``~/.local/state/activitylog``). Keep it off the database's disk
    and out of its backups."""

    data_key: str = ""
    """Base64 of a 32-byte key that seals stored secrets (DKIM private keys); else the key file below."""

    data_key_file: str = ""
    """Where the data key lives (default: beside the SQLite file, or ./activitylog-data.key)."""

    log_origin: str = "activitylog.local"
    """The prefix of each account's log origin (``<prefix>/<account_id>``), the name checkpoints are signed
    under: set it to a name of your service, e.g. ``audit.example.com``."""

    verifier_keys: str = ""
    """Comma-separated base64 Ed25519 public keys, besides the signing key's own, that checkpoints may be
    signed with (the keys you rotated away from). Pinned here, never read from the database."""

    checkpoint_interval_seconds: int = 300
    """How often ``serve`` signs a checkpoint of every account whose log moved (0 turns it off)."""

    purge_interval_seconds: int = 3600
    """How often the worker purges the entries past each account's ``log_retention_days`` that no legal
    hold covers (0 turns it off; ``activitylog purge`` does the same by hand)."""

    smtp_url: str = ""
    """``smtp://[user:password@]host:port`` (``smtps://`` for TLS) to deliver broadcasts; unset: .eml files
    under ``outbox/`` beside the database."""

    dns_resolver: str = ""
    """``host:port`` of the DNS resolver that "Verify DNS" asks (unset: the system's resolver)."""

    counts_interval_seconds: float = 2.0
    """How often the worker brings the activity page's timeline and facet counts up with the log (0 turns
    it off: the page then counts the log itself, exact but slower on a big account)."""

    worker_interval_seconds: float = 1.0
    """How often the scheduler/dispatcher looks for due and sending broadcasts."""

    stream_allow_private: bool = False
    """Let streams deliver to private, loopback and link-local addresses (refused by default, both when a
    stream is set up and for the addresses its host resolves to at each delivery)."""

    nats_url: str = "nats://127.0.0.1:4222"
    """The NATS server (with JetStream) that ``nats`` streams publish to."""

    stream_timeout_seconds: float = 10.0
    """How long one delivery attempt may take (connect, send, answer) before it counts as failed."""

    stream_interval_seconds: float = 0.2
    """How often the relay looks for streams with entries to deliver."""

    stream_workers: int = 8
    """How many streams one relay process delivers at once (each stream is one worker at a time)."""

    stream_checkpoint_entries: int = 1000
    """An unfiltered stream carries a checkpoint event at least every this many entries..."""

    stream_checkpoint_seconds: float = 60.0
    """...and at least this often while entries arrive."""

    alert_interval_seconds: float = 0.2
    """How often the detectors look for new entries to check (0 turns the detectors off)."""

    alert_from_email: str = "alerts@activitylog.local"
    """The sender of alert emails (to each account's owners and admins, through the SMTP relay or outbox)."""

    public_url: str = "http://127.0.0.1:8000"
    """The dashboard's address as its users reach it: alert emails link to alerts and entries under it."""

    alert_spray_accounts: int = 5
    """``signin.spray``: one IP failing sign-ins on at least this many accounts... (0 turns it off)"""

    alert_spray_minutes: int = 15
    """...within this many minutes raises an alert in each of those accounts."""

    metrics: bool = False
    """Serve ``GET /metrics`` (Prometheus text format, unauthenticated: expose it to the operator only)."""

    worker_metrics_dir: str = ""
    """Where worker processes write their metrics for ``/metrics`` to add (``worker_metrics``); ``serve``
    makes one for the worker it starts when this is empty."""

    log_level: str = "info"
    """The level of the JSON log lines ``serve`` and ``worker`` write to standard error."""

    web_processes: int = Field(default=0, ge=0, le=64)
    """How many processes ``serve`` answers requests with (0: one per CPU); the workers run in one more."""

    worker_nice: int = 10
    """How much the worker's threads lower their CPU priority (``nice``), so requests come first (0: not);
    all but the stream relay's, whose lag is its priority."""

    @property
    def key_directory(self) -> Path:
        if self.key_dir:
            return Path(self.key_dir)
        state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        return Path(state) / "activitylog"

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IPNetwork, ...]:
        parts = [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]
        return tuple(ipaddress.ip_network(p, strict=False) for p in parts)


def key_file_path(settings: Settings, configured: str, suffix: str, fallback: str) -> Path:
    """Where a key file lives: as configured, else beside the SQLite database, else in the working
    directory — never inside the database it protects."""
    if configured:
        return Path(configured)
    url = settings.database_url
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        return Path(url[len("sqlite:///") :] + suffix)
    return Path(fallback)
