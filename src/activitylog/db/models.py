"""The tables. Every key is led by ``account_id`` so tenant isolation is a WHERE clause you cannot forget
and the tables can later be distributed by tenant or partitioned without a redesign.

Models that inherit :class:`Audited` are watched by the unit of work: any insert, update or delete of one
must be covered by an activity entry in the same transaction, or the commit is refused (see ``log/guard.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from activitylog.db.base import Base, UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


class Audited:
    """Mixin for tables whose every change must be logged.

    ``__audit_type__`` is the resource type in the log; ``__audit_secret__`` fields appear only as
    ``"[redacted]"``.

    ``__audit_identity__`` fields name the row (its id, account and creation time): the entry already shows
    them as its resource, account and time, so create and delete diffs leave them out. They never change;
    an update that changed one would be logged like any other field.

    ``__audit_bookkeeping__`` fields are the only ones that may change with no entry: records of use, such
    as when a credential was last used, that no one acts on. Nothing that decides who did what may be
    bookkeeping — a broadcast's ``scheduled_by`` names whom the scheduler sends for, so it is logged.
    """

    __audit_type__: ClassVar[str]
    __audit_secret__: ClassVar[frozenset[str]] = frozenset()
    __audit_identity__: ClassVar[frozenset[str]] = frozenset({"id", "account_id", "created_at"})
    __audit_bookkeeping__: ClassVar[frozenset[str]] = frozenset()

    @property
    def audit_id(self) -> str:
        return str(getattr(self, "id"))  # noqa: B009

    @property
    def audit_name(self) -> str | None:
        return getattr(self, "name", None)


MIN_RETENTION_DAYS = 365
DEFAULT_RETENTION_DAYS = 400


class Account(Audited, Base):
    __tablename__ = "accounts"
    __audit_type__ = "account"
    __table_args__ = (
        CheckConstraint(f"log_retention_days >= {MIN_RETENTION_DAYS}", name="log_retention_days"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How long the account's log keeps an entry before the purge may remove it (``services/retention``).
    log_retention_days: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_RETENTION_DAYS, server_default=str(DEFAULT_RETENTION_DAYS)
    )


class User(Audited, Base):
    __tablename__ = "users"
    __audit_type__ = "user"
    __audit_secret__ = frozenset({"password_hash"})
    __audit_bookkeeping__ = frozenset({"last_login_at"})
    __table_args__ = (UniqueConstraint("account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def audit_name(self) -> str | None:
        return self.email


class ApiKey(Audited, Base):
    __tablename__ = "api_keys"
    __audit_type__ = "api_key"
    __audit_secret__ = frozenset({"secret_hash"})
    __audit_bookkeeping__ = frozenset({"last_used_at", "last_used_ip"})
    __table_args__ = (Index(None, "account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(45))


class AuthSession(Base):
    """A dashboard session. Not audited as a row: sign-in and sign-out are logged as user actions."""

    __tablename__ = "auth_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MailingList(Audited, Base):
    __tablename__ = "lists"
    __audit_type__ = "list"
    __table_args__ = (Index(None, "account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Contact(Audited, Base):
    __tablename__ = "contacts"
    __audit_type__ = "contact"
    __table_args__ = (
        UniqueConstraint("account_id", "list_id", "email"),
        Index(None, "account_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    list_id: Mapped[str] = mapped_column(ForeignKey("lists.id"))
    email: Mapped[str] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="subscribed")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def audit_name(self) -> str | None:
        return self.email


class Segment(Audited, Base):
    __tablename__ = "segments"
    __audit_type__ = "segment"
    __table_args__ = (Index(None, "account_id", "id"), Index(None, "account_id", "list_id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    list_id: Mapped[str] = mapped_column(ForeignKey("lists.id"))
    name: Mapped[str] = mapped_column(String(200))
    conditions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BroadcastStatus(StrEnum):
    """Where a broadcast is in its life; which action may move it where: ``services.broadcasts.LIFECYCLE``."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    ARCHIVED = "archived"  # kept for its delivery records; it no longer holds its list or segment


class Broadcast(Audited, Base):
    __tablename__ = "broadcasts"
    __audit_type__ = "broadcast"
    __table_args__ = (
        Index(None, "account_id", "id"),
        Index(None, "status", "send_at"),
        Index(None, "account_id", "list_id"),
        Index(None, "account_id", "segment_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(998))
    from_email: Mapped[str] = mapped_column(String(320))
    list_id: Mapped[str | None] = mapped_column(ForeignKey("lists.id"))
    segment_id: Mapped[str | None] = mapped_column(ForeignKey("segments.id"))
    html: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=BroadcastStatus.DRAFT)
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_by: Mapped[str | None] = mapped_column(String(60))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recipients: Mapped[int | None] = mapped_column(Integer)
    delivered: Mapped[int | None] = mapped_column(Integer)
    failed: Mapped[int | None] = mapped_column(Integer)
    suppressed: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Suppression(Audited, Base):
    __tablename__ = "suppressions"
    __audit_type__ = "address"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def audit_id(self) -> str:
        return self.email

    @property
    def audit_name(self) -> str | None:
        return self.email


class SendingDomain(Audited, Base):
    __tablename__ = "sending_domains"
    __audit_type__ = "sending_domain"
    __audit_secret__ = frozenset({"dkim_private_key"})
    __table_args__ = (UniqueConstraint("account_id", "domain"), Index(None, "account_id", "id"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    domain: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    dkim_selector: Mapped[str] = mapped_column(String(63), default="activitylog")
    dkim_private_key: Mapped[str | None] = mapped_column(Text)
    return_path: Mapped[str | None] = mapped_column(String(253))
    tracking_domain: Mapped[str | None] = mapped_column(String(253))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def audit_name(self) -> str | None:
        return self.domain

    @property
    def has_dkim_private_key(self) -> bool:
        return self.dkim_private_key is not None


class ReputationRule(Audited, Base):
    __tablename__ = "reputation_rules"
    __audit_type__ = "reputation_rule"
    __table_args__ = (Index(None, "account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    action: Mapped[dict[str, Any]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChainHead(Base):
    """The last seq and hash of an account's log: the row appends lock to serialise per account."""

    __tablename__ = "activity_heads"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The Merkle tree's right edge: hashes of the complete subtrees that make up the tree of ``seq`` leaves,
    # largest first (``log.tree``), so an append extends the tree without reading it.
    tree: Mapped[bytes | None] = mapped_column(LargeBinary)


class TreeNodes(Base):
    """The hashes of the Merkle subtrees completed by the entry with this seq, levels 1 and up, 32 bytes
    each (``log.tree``). Derived from the log, append-only like it, and re-derived by ``verify``."""

    __tablename__ = "activity_tree"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class AffectedResource(Base):
    """A resource an entry changed other than its own (the contacts a list's import created or its delete
    took with it), so ``resource_id`` finds every entry that touched a resource. Derived from each entry's
    ``<type>_ids`` changes (``log.affected``), append-only like the log, and re-derived by ``verify``."""

    __tablename__ = "activity_affected"
    __table_args__ = (Index(None, "account_id", "seq"),)  # a purge piece's seq range (0022)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(320), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(40))


class LegalHold(Audited, Base):
    """A window of the account's log (``since``..``until``, either end open) that nothing purges while the
    hold is active; released holds are kept, with when they were released."""

    __tablename__ = "legal_holds"
    __audit_type__ = "legal_hold"
    __table_args__ = (Index(None, "account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    reason: Mapped[str] = mapped_column(String(500))
    since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def audit_name(self) -> str | None:
        return self.reason


class SavedView(Audited, Base):
    """A user's named activity filter (the activity page's saved views): the filters of ``log/filters.py``
    as given, seen and changed by that user only. Deleted with its user, in the user's entry (no cascade:
    the database would remove them where the guard cannot see)."""

    __tablename__ = "saved_views"
    __audit_type__ = "saved_view"
    __table_args__ = (
        UniqueConstraint("account_id", "user_id", "name"),
        Index(None, "account_id", "user_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(200))
    filter: Mapped[dict[str, str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PurgedEntry(Base):
    """What a purged entry leaves behind: its seq, its hash (the tree's leaf, so proofs still verify) and its
    prev_hash (the chain's link across the gap), with the policy it was purged under and the seq of the
    ``activity_log.purge`` entry of the run. Append-only; an entry can only be deleted once its tombstone
    exists (migration 0012). No key to ``accounts``: a tombstone is copied from its entry, which has one
    (migration 0026: the check per tombstone was a third of the purge function's time)."""

    __tablename__ = "activity_purged"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    older_than: Mapped[datetime] = mapped_column(UTCDateTime)
    retention_days: Mapped[int] = mapped_column(Integer)
    purge_seq: Mapped[int] = mapped_column(BigInteger)


class ErasedEntry(Base):
    """A permanent record that an erasure removed personal values from an entry (its ``contact.erase``
    entry's seq); only with one may an entry's personal values be scrubbed (migration 0014)."""

    __tablename__ = "activity_erased"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    erase_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


class SignInFailures(Base):
    """Failed sign-ins for one address in the current window, whether or not a user has the address, so
    an unknown address is locked out exactly like a known one. Keyed by a SHA-256 of the lower-cased
    address: attempts at addresses no one has are not kept in the clear. Not an account's row."""

    __tablename__ = "sign_in_failures"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    failures: Mapped[int] = mapped_column(Integer)


class Delivery(Base):
    """One recipient of one broadcast. Claimed (inserted) before the message goes out, so two dispatchers
    can never both send it; bookkeeping, not an account change, so it is not audited row by row."""

    __tablename__ = "deliveries"
    __table_args__ = (Index(None, "account_id", "broadcast_id", "status", "sent_at"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    broadcast_id: Mapped[str] = mapped_column(ForeignKey("broadcasts.id"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # sending | sent | failed
    error: Mapped[str | None] = mapped_column(String(500))
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryEvent(Base):
    """Feedback from the mail transfer agent, idempotent by the agent's event id."""

    __tablename__ = "delivery_events"
    __table_args__ = (Index(None, "account_id", "broadcast_id", "type", "received_at"),)

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    type: Mapped[str] = mapped_column(String(20))  # delivered | bounce | complaint
    bounce_type: Mapped[str | None] = mapped_column(String(10))
    email: Mapped[str] = mapped_column(String(320))
    broadcast_id: Mapped[str | None] = mapped_column(String(40))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActivityEntry(Base):
    """One activity entry. Append-only; ``changes`` is stored as its canonical JSON text."""

    __tablename__ = "activity_entries"
    __table_args__ = (
        ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        Index(None, "account_id", "actor_id", "seq"),
        Index(None, "account_id", "actor_type", "seq"),
        Index(None, "account_id", "on_behalf_of", "seq"),
        Index(None, "account_id", "action", "seq"),
        Index(None, "account_id", "resource_type", "seq"),
        Index(None, "account_id", "resource_id", "seq"),
        Index(None, "account_id", "ip_key", "seq"),
        Index(None, "account_id", "occurred_at", "seq"),
        # The entries holding personal data (v2): what an erasure searches, not the whole log (0024).
        Index(
            "ix_activity_entries_personal",
            "account_id",
            "seq",
            sqlite_where=text("salts IS NOT NULL"),
            postgresql_where=text("salts IS NOT NULL"),
        ),
    )

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(60))
    actor_name: Mapped[str | None] = mapped_column(String(320))
    on_behalf_of: Mapped[str | None] = mapped_column(String(80))
    ip: Mapped[str | None] = mapped_column(String(45))
    ip_key: Mapped[str | None] = mapped_column(String(33))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    action: Mapped[str] = mapped_column(String(60))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(320))
    resource_name: Mapped[str | None] = mapped_column(String(998))
    summary: Mapped[str] = mapped_column(Text)
    changes: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # Which cells of the entry's CSV row need a formula guard or quotes (``log.csv_sql``), so the export
    # builds its lines without scanning every cell; NULL (entries written before it existed) means check.
    csv_escapes: Mapped[int | None] = mapped_column(BigInteger)
    # Canonical form v2 (``log.personal``): the salts of the personal values the hash covers only as
    # commitments, as canonical JSON ``{path: salt}`` (``{path: {"commitment": …}}`` once erased); NULL: v1.
    salts: Mapped[str | None] = mapped_column(Text)


class Stream(Audited, Base):
    """A destination the account's log is delivered to (a webhook or a NATS JetStream subject), with the
    activity filter it takes. ``secret`` is the sealed HMAC secret or Ed25519 private key; ``state`` is
    what the account set (``active``, ``paused``) or what a destination's 410 made it (``disabled``)."""

    __tablename__ = "streams"
    __audit_type__ = "stream"
    __audit_secret__ = frozenset({"secret"})
    __table_args__ = (UniqueConstraint("account_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))  # webhook | nats
    url: Mapped[str | None] = mapped_column(String(2000))
    subject: Mapped[str | None] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(20))  # json | ocsf
    filter: Mapped[dict[str, str]] = mapped_column(JSON)
    signing: Mapped[str | None] = mapped_column(String(20))  # hmac | ed25519 (webhooks)
    secret: Mapped[str | None] = mapped_column(Text)
    public_key: Mapped[str | None] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreamCursor(Base):
    """Where a stream's delivery stands: the last seq it handled (delivered, or passed over by its
    filter), the retry of the event after it, the pending checkpoint event, and the lease of the worker
    delivering it. Operational state moved by the relay, not by the account, so it is not audited row by
    row; the account's own moves of it (create, replay, resume) are logged on the stream."""

    __tablename__ = "stream_cursors"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "stream_id"], ["streams.account_id", "streams.id"], ondelete="CASCADE"
        ),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    delivered_seq: Mapped[int] = mapped_column(BigInteger)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pending_checkpoint: Mapped[int | None] = mapped_column(BigInteger)
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    checkpoint_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(80))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class VerifyRunState(Base):
    """The latest verify run of an account in one mode, as every web process sees it: who runs it, how far
    it got and, once done, its verdict as the API gives it (migration 0018). Operational state, not
    audited."""

    __tablename__ = "verify_runs"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    mode: Mapped[str] = mapped_column(String(20), primary_key=True)
    runner: Mapped[str] = mapped_column(String(80))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    total: Mapped[int] = mapped_column(BigInteger)
    checked: Mapped[int] = mapped_column(BigInteger)
    signed_size: Mapped[int | None] = mapped_column(BigInteger)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class StreamDelivery(Base):
    """One delivery attempt of one event (kept for the most recent attempts of each stream)."""

    __tablename__ = "stream_deliveries"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "stream_id"], ["streams.account_id", "streams.id"], ondelete="CASCADE"
        ),
        Index(None, "account_id", "stream_id", "id"),
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # a ULID: attempts sort by time
    stream_id: Mapped[str] = mapped_column(String(40))
    event_id: Mapped[str] = mapped_column(String(120))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    duration_ms: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActivityCount(Base):
    """Derived data: how many entries an hour (``unit`` "hour") or a UTC day ("day") starting at ``start``
    holds, per value of the columns of its ``grain`` (``log/counts.py``: by actor, by action, by both; a
    column outside the grain is ""), for the activity page's timeline and facet counts. Written only by the
    counts follower after the entries commit, never on a mutation's commit path, and by each purge piece
    (what it removed); rebuilt from the log when lost."""

    __tablename__ = "activity_counts"
    # SQLite keeps the rows in key order (no rowid), so a window is one sequential range; the two other
    # indexes hold every column a reader sums, so a filter on an actor or an action never visits the rows.
    __table_args__ = (
        Index(None, "account_id", "grain", "unit", "actor_id", "start", "action", "resource_type", "entries"),
        Index(None, "account_id", "grain", "unit", "action", "start", "actor_id", "actor_type", "entries"),
        {"sqlite_with_rowid": False},
    )

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    grain: Mapped[str] = mapped_column(String(8), primary_key=True)
    unit: Mapped[str] = mapped_column(String(8), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    actor_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    actor_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    action: Mapped[str] = mapped_column(String(60), primary_key=True)
    resource_type: Mapped[str] = mapped_column(String(40), primary_key=True)
    entries: Mapped[int] = mapped_column(BigInteger)


class ActivityCountsCursor(Base):
    """How far ``activity_counts`` has counted an account's log: every entry up to ``through_seq`` (less
    those a purge removed since: each purge piece takes its entries out of the counts)."""

    __tablename__ = "activity_counts_cursors"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    through_seq: Mapped[int] = mapped_column(BigInteger)


class Alert(Audited, Base):
    """What a detector found (``alerts/``): raised by ``system:alerts`` and acknowledged by a user, each an
    entry. ``dedup_key`` (the kind and the triggering entry) makes raising idempotent, so a detector that
    replays the log after losing its state raises nothing twice; ``trigger_at`` is the triggering entry's
    recorded time, what windows of "one alert per burst" are measured in."""

    __tablename__ = "alerts"
    __audit_type__ = "alert"
    __table_args__ = (
        UniqueConstraint("account_id", "dedup_key"),
        Index(None, "account_id", "status", "id"),
        Index(None, "account_id", "kind", "actor_id", "trigger_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open | acknowledged
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    trigger_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_type: Mapped[str | None] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(60))
    actor_name: Mapped[str | None] = mapped_column(String(320))
    ip: Mapped[str | None] = mapped_column(String(45))
    summary: Mapped[str] = mapped_column(String(500))
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)
    seqs: Mapped[list[int]] = mapped_column(JSON)
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(String(60))

    __audit_identity__ = frozenset({"id", "account_id", "created_at", "dedup_key", "trigger_at"})

    @property
    def audit_name(self) -> str | None:
        return self.kind


class AlertPolicy(Audited, Base):
    """An account's detector settings (``alerts/policy.py``); no row means every default. Changing it is
    an ``account.update`` entry on the account whose diff is ``alert_policy``."""

    __tablename__ = "alert_policies"
    __audit_type__ = "account"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    alert_policy: Mapped[dict[str, Any]] = mapped_column(JSON)

    @property
    def audit_id(self) -> str:
        return self.account_id


class AlertCursor(Base):
    """How far the detectors have read an account's log (derived: lost, they replay it from seq 1)."""

    __tablename__ = "alert_cursors"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)


class AlertCredential(Base):
    """What the detectors remember of one credential (a key or a user acting): when it last acted and
    the networks (/24, /48) it acted from in the last 30 days, each with when it was last seen there.
    Derived from the log: a missing row is rebuilt from the credential's entries."""

    __tablename__ = "alert_credentials"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    actor_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    actor_id: Mapped[str] = mapped_column(String(60), primary_key=True)
    uses: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_ip: Mapped[str | None] = mapped_column(String(45))
    networks: Mapped[dict[str, str]] = mapped_column(JSON)
