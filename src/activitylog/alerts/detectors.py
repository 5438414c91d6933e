"""The detectors: each entry of an account's log, in seq order, checked against the account's policy.

Every window is measured in the entries' recorded times (``occurred_at``, the recorder's clock), never the
detector's, so replaying weeks of history finds what living through it would have, and a detector that
lost its state and replays the log finds the same alerts again — which ``dedup_key`` (kind and triggering
seq) then refuses to raise twice.

What a detector remembers between entries is the credentials' state (:class:`Credential`: last use, the
networks of the last 30 days), kept per account in ``alert_credentials`` and rebuilt from the credential's
own entries when missing. Counts over windows (bursts and their 30-day baselines, failed sign-ins) come
from :class:`Window`: the times of the entries a window counts, kept in the follower's memory across
batches (:class:`Memory`) and read from the log once, by time range, when the process meets a window it
has no memory of — never for an account it checked from seq 1, whose every entry it has seen. So checking
an entry costs no query unless it raises an alert, which is what keeps a replay of a big log fast.
"""

from __future__ import annotations

import ipaddress
import json
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, func, select

from activitylog.alerts.policy import Policy
from activitylog.alerts.spray import Failure, SprayMemory
from activitylog.alerts.store import Finding
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, Alert
from activitylog.log.actions import ALL_ACTIONS
from activitylog.log.record import Actor

_entries = cast(Table, ActivityEntry.__table__)
FAILED_VERBS = ("login_failed", "denied")
CREDENTIALS = ("api_key", "session")
DELETES = "burst.delete"
EXPORTS = "burst.export"
BASELINE = timedelta(days=30)
ONCE_PER_WINDOW = ("burst.delete", "burst.export", "signin.failures")  # one alert per burst (last_raised)
SIGNIN_SPAN = timedelta(minutes=1440)  # the longest window signin.failures may have (policy.py)
MAX_SEQS = 100  # an alert names at most this many triggering entries
ELEVATED_ROLES = ("admin", "owner")
DNS_FIELDS = ("domain", "dkim_selector", "dkim_private_key", "return_path", "tracking_domain")
STREAM_STOPS = ("stream.pause", "stream.delete", "stream.disable")


@lru_cache(maxsize=65_536)
def network(ip: str) -> str:
    """The /24 of an IPv4 address, the /48 of an IPv6 one: what "the same network" means here."""
    address = ipaddress.ip_address(ip)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def burst_kind(action: str) -> str | None:
    verb = action.partition(".")[2]
    if verb == "delete" or action == "address.suppress":
        return DELETES
    if verb == "export":
        return EXPORTS
    return None


def _changes(row: Row[Any]) -> dict[str, Any]:
    value = json.loads(row.changes) if isinstance(row.changes, str) else row.changes
    return value if isinstance(value, dict) else {}


def _to(value: Any) -> Any:
    return value.get("to") if isinstance(value, dict) and "to" in value else value


def _from(value: Any) -> Any:
    return value.get("from") if isinstance(value, dict) else None


def _instant(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class Credential:
    actor_type: str
    actor_id: str
    uses: int = 0
    last_seen_at: datetime | None = None
    last_ip: str | None = None
    networks: dict[str, datetime] = field(default_factory=dict)
    dirty: bool = False


@dataclass
class Window:
    """The times (and seqs) of the entries one window counts — one actor's deletes or exports, an account's
    failed sign-ins — over the last ``span`` before the latest, in seq order (``occurred_at`` never
    decreases along seq, ``log/record.py``)."""

    span: timedelta
    times: list[datetime] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    last_seq: int = 0

    def add(self, at: datetime, seq: int) -> None:
        if seq <= self.last_seq:
            return  # met again (a batch checked twice)
        self.last_seq = seq
        self.times.append(at)
        self.seqs.append(seq)
        old = bisect_right(self.times, at - self.span)
        if old:
            del self.times[:old], self.seqs[:old]

    def after(self, since: datetime) -> list[int]:
        """The seqs of the entries later than ``since``."""
        return self.seqs[bisect_right(self.times, since) :]

    def until(self, until: datetime) -> int:
        """How many entries are at ``until`` or before it (within the span)."""
        return bisect_right(self.times, until)


@dataclass
class Memory:
    """What the detectors know of one account between batches, in the follower's process: the
    credentials' state, the windows, the last alert of each kind per actor. ``cursor`` is the cursor it is
    current at (the follower drops it when the cursor moved otherwise); ``complete`` when this process
    checked the account from seq 1, so that what it has not seen never happened: a credential it has no
    state of never acted, a window it has no memory of is empty."""

    cursor: int
    complete: bool
    stale_stored: bool = False
    """The stored states are from before a replay from seq 1: the next save deletes them."""
    last_raised_read: bool = False
    credentials: dict[tuple[str, str], Credential] = field(default_factory=dict)
    windows: dict[tuple[str, ...], Window] = field(default_factory=dict)
    last_raised: dict[tuple[str, str | None], datetime | None] = field(default_factory=dict)


SENSITIVE_ACTIONS = frozenset(
    {"user.update", "user.create", "api_key.create", "sending_domain.update", "account.update"}
    | set(STREAM_STOPS)
    | {"legal_hold.release"}
)


def sensitive(row: Row[Any]) -> str | None:
    """Why the entry is a sensitive change (the contract's list), or None."""
    action = row.action
    if action not in SENSITIVE_ACTIONS:
        return None  # most entries: their changes need not be parsed
    changes = _changes(row)
    if action in ("user.update", "user.create") and _to(changes.get("role")) in ELEVATED_ROLES:
        if action == "user.create" and row.actor_type == "system":
            return None  # an account's first owner, made with the account
        return f"{row.resource_name or row.resource_id} got role {_to(changes['role'])}"
    if action == "api_key.create" and "full" in (_to(changes.get("scopes")) or []):
        return f"API key {row.resource_name or row.resource_id} was created with scope full"
    if action == "sending_domain.update":
        fields = [f for f in DNS_FIELDS if f in changes]
        if fields:
            return f"sending domain {row.resource_name or row.resource_id} changed {', '.join(fields)}"
    if action in STREAM_STOPS:
        return f"stream {row.resource_name or row.resource_id}: {action.partition('.')[2]}"
    if action == "account.update" and "log_retention_days" in changes:
        before, after = _from(changes["log_retention_days"]), _to(changes["log_retention_days"])
        if isinstance(before, int) and isinstance(after, int) and after < before:
            return f"log retention shortened from {before} to {after} days"
    if action == "legal_hold.release":
        return f"legal hold {row.resource_name or row.resource_id} was released"
    return None


class Scan:
    """One pass over a batch of one account's entries: the detectors' findings, in seq order."""

    def __init__(
        self,
        db: Database,
        conn: Connection,
        account_id: str,
        policy: Policy,
        settings: Settings,
        memory: Memory,
        load: Any,
        spray: SprayMemory | None = None,
    ) -> None:
        self.db, self.conn, self.account_id = db, conn, account_id
        self.policy, self.settings = policy, settings
        self.memory = memory
        self.credentials = memory.credentials
        self._load = load  # (actor_type, actor_id, before_seq) -> Credential
        self.spray = spray
        self._last_raised = memory.last_raised

    # ---- state ----
    def credential(self, actor_type: str, actor_id: str, before_seq: int) -> Credential:
        key = (actor_type, actor_id)
        found = self.credentials.get(key)
        if found is None:
            found = self.credentials[key] = self._load(actor_type, actor_id, before_seq)
        return found

    def last_raised(self, kind: str, who: str | None) -> datetime | None:
        """The trigger time of the latest alert of ``kind`` for this actor, to raise one per burst: the
        account's are read once (one query for every actor and kind), then kept up by :meth:`raised`."""
        if not self.memory.last_raised_read:
            for got, actor_id, latest in self.conn.execute(
                select(Alert.kind, Alert.actor_id, func.max(Alert.trigger_at))
                .where(Alert.account_id == self.account_id, Alert.kind.in_(ONCE_PER_WINDOW))
                .group_by(Alert.kind, Alert.actor_id)
            ):
                self._last_raised.setdefault((got, actor_id), latest)
            self.memory.last_raised_read = True
        return self._last_raised.get((kind, who))

    def raised(self, finding: Finding, who: str | None) -> None:
        self._last_raised[(finding.kind, who)] = finding.trigger_at

    # ---- the detectors ----
    def check(self, row: Row[Any]) -> list[Finding]:
        if row.actor_type == "system" and row.actor_id == "alerts":
            return []
        found: list[Finding] = []
        verb = row.action.partition(".")[2]
        if row.actor_type in CREDENTIALS and row.actor_id != "anonymous" and verb not in FAILED_VERBS:
            found += self._credential_use(row)
        if row.action in ("api_key.create", "api_key.rotate"):
            key = self.credential("api_key", row.resource_id, row.seq)
            key.last_seen_at, key.dirty = row.occurred_at, True  # a fresh key is not dormant
        kind = burst_kind(row.action)
        if kind is not None and row.actor_type != "system":
            found += self._burst(row, kind)
        if row.action == "user.login_failed":
            found += self._failures(row)
            found += self._spray(row)
        reason = sensitive(row) if self.policy.sensitive_change.enabled else None
        if reason is not None:
            found.append(
                Finding(
                    "sensitive.change",
                    f"Sensitive change: {reason}",
                    row.occurred_at,
                    [row.seq],
                    {"action": row.action, "resource_id": row.resource_id},
                    actor=_actor(row),
                    ip=row.ip,
                    dedup_key=f"sensitive.change:{row.seq}",
                )
            )
        return found

    def _credential_use(self, row: Row[Any]) -> list[Finding]:
        cred = self.credential(row.actor_type, row.actor_id, row.seq)
        found: list[Finding] = []
        now: datetime = row.occurred_at
        last_use = cred.last_seen_at
        dormant = self.policy.credential_dormant
        if row.actor_type == "api_key" and dormant.enabled and last_use is not None:
            idle = now - last_use
            if idle >= timedelta(days=dormant.days):
                days = round(idle.total_seconds() / 86400, 1)
                found.append(
                    Finding(
                        "credential.dormant",
                        f"API key {row.actor_name or row.actor_id} was unused for {days:g} days, "
                        "then made a change",
                        now,
                        [row.seq],
                        {"last_use": _instant(last_use), "idle_days": days, "action": row.action},
                        actor=_actor(row),
                        ip=row.ip,
                        dedup_key=f"credential.dormant:{row.seq}",
                    )
                )
        new_ip = self.policy.credential_new_ip
        horizon = now - timedelta(days=new_ip.days)
        if row.ip:
            net = network(row.ip)
            known = sorted(n for n, seen in cred.networks.items() if seen > horizon)
            if new_ip.enabled and cred.uses > 0 and net not in known:
                who = "API key" if row.actor_type == "api_key" else "User"
                figures: dict[str, Any] = {"network": net, "known_networks": known[:10]}
                if last_use is not None:
                    figures["last_use"] = _instant(last_use)
                if cred.last_ip:
                    figures["last_ip"] = cred.last_ip
                found.append(
                    Finding(
                        "credential.new_ip",
                        f"{who} {row.actor_name or row.actor_id} acted from {row.ip}, a network it has not "
                        f"used in {new_ip.days} days",
                        now,
                        [row.seq],
                        figures,
                        actor=_actor(row),
                        ip=row.ip,
                        dedup_key=f"credential.new_ip:{row.seq}",
                    )
                )
            cred.networks[net] = now
            cred.last_ip = row.ip
        cred.networks = {n: seen for n, seen in cred.networks.items() if seen > horizon}
        cred.uses += 1
        cred.last_seen_at = now
        cred.dirty = True
        return found

    def _window(
        self, key: tuple[str, ...], row: Row[Any], span: timedelta, *, actor: bool, actions: list[str]
    ) -> Window:
        """The window ``key`` with ``row`` in it: from memory, or (the first time this process meets it,
        unless it has seen the whole log) from the entries of the ``span`` before ``row``."""
        window = self.memory.windows.get(key)
        if window is None:
            window = self.memory.windows[key] = Window(span)
            if not self.memory.complete:
                e = _entries.c
                where = [
                    e.account_id == self.account_id,
                    e.occurred_at > row.occurred_at - span,
                    e.seq < row.seq,
                    e.action.in_(actions),
                ]
                if actor:
                    where += [e.actor_type == row.actor_type, e.actor_id == row.actor_id]
                for at, seq in self.conn.execute(select(e.occurred_at, e.seq).where(*where).order_by(e.seq)):
                    window.add(at, seq)
        window.add(row.occurred_at, row.seq)
        return window

    def _burst(self, row: Row[Any], kind: str) -> list[Finding]:
        rule = self.policy.burst_delete if kind == DELETES else self.policy.burst_export
        key = (kind, row.actor_type, row.actor_id)
        counted = self._window(key, row, BASELINE, actor=True, actions=_burst_actions(kind))
        if not rule.enabled:
            return []  # (the window is kept all the same: it is whole when the detector is back on)
        window = timedelta(minutes=rule.minutes)
        last = self.last_raised(kind, row.actor_id)
        if last is not None and row.occurred_at - last < window:
            return []  # this burst already raised its alert
        seqs = counted.after(row.occurred_at - window)
        if len(seqs) < rule.count:
            return []
        before = counted.until(row.occurred_at - window)  # in the 30 days before the window
        rate = before / ((BASELINE - window) / window)  # its usual count per window
        if len(seqs) < rule.ratio * rate:
            return []
        noun = "deletes or suppressions" if kind == DELETES else "exports"
        finding = Finding(
            kind,
            f"{row.actor_name or row.actor_id}: {len(seqs)} {noun} within {rule.minutes} minutes",
            row.occurred_at,
            seqs[-MAX_SEQS:],
            {"count": len(seqs), "minutes": rule.minutes, "baseline_per_window": round(rate, 3)},
            actor=_actor(row),
            ip=row.ip,
            dedup_key=f"{kind}:{row.seq}",
        )
        self.raised(finding, row.actor_id)
        return [finding]

    def _failures(self, row: Row[Any]) -> list[Finding]:
        rule = self.policy.signin_failures
        kind = "signin.failures"
        counted = self._window((kind,), row, SIGNIN_SPAN, actor=False, actions=["user.login_failed"])
        if not rule.enabled:
            return []
        last = self.last_raised(kind, None)
        if last is not None and row.occurred_at - last < timedelta(minutes=rule.minutes):
            return []
        seqs = counted.after(row.occurred_at - timedelta(minutes=rule.minutes))
        if len(seqs) < rule.count:
            return []
        finding = Finding(
            kind,
            f"{len(seqs)} failed sign-ins on the account within {rule.minutes} minutes",
            row.occurred_at,
            seqs[-MAX_SEQS:],
            {"count": len(seqs), "minutes": rule.minutes},
            ip=row.ip,
            dedup_key=f"{kind}:{row.seq}",
        )
        self.raised(finding, None)
        return [finding]

    def _spray(self, row: Row[Any]) -> list[Finding]:
        """Operator-wide: one IP failing sign-ins on many accounts (``alerts/spray.py``); the finding goes
        to every account the window spans, each with its own failures."""
        if self.spray is None or not self.spray.enabled or not row.ip:
            return []
        hit = self.spray.note(row.ip, Failure(row.occurred_at, self.account_id, row.seq))
        if hit is None:
            return []
        kind, minutes = "signin.spray", self.settings.alert_spray_minutes
        found = []
        for account_id, failures in sorted(hit.items()):
            last = failures[-1]
            if self._sprayed_recently(account_id, row.ip, last.at):
                continue
            found.append(
                Finding(
                    kind,
                    f"{row.ip} failed sign-ins on {len(hit)} accounts within {minutes} minutes",
                    last.at,
                    [f.seq for f in failures][-MAX_SEQS:],
                    {"accounts": len(hit), "minutes": minutes},
                    ip=row.ip,
                    dedup_key=f"{kind}:{last.seq}",
                    account_id=account_id,
                )
            )
        return found

    def _sprayed_recently(self, account_id: str, ip: str, at: datetime) -> bool:
        window = timedelta(minutes=self.settings.alert_spray_minutes)
        with self.db.for_account(account_id).read_connection() as conn:
            last = conn.execute(
                select(func.max(Alert.trigger_at)).where(
                    Alert.account_id == account_id, Alert.kind == "signin.spray", Alert.ip == ip
                )
            ).scalar_one_or_none()
        return last is not None and abs(at - last) < window


_BURST_ACTIONS = {
    kind: sorted(a for a in ALL_ACTIONS if burst_kind(a) == kind) for kind in (DELETES, EXPORTS)
}


def _burst_actions(kind: str) -> list[str]:
    return _BURST_ACTIONS[kind]


def _actor(row: Row[Any]) -> Actor:
    return Actor(type=row.actor_type, id=row.actor_id, name=row.actor_name)
