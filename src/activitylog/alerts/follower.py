"""The detectors as a follower of the log (``log/follow.py``), run by the worker process, never on the
commit path: a mutation commits without waiting for them, and nothing they do can fail it.

Per account they keep a cursor (``alert_cursors``, the last seq checked) and the credentials' state
(``alert_credentials``), both moved after each batch in the transaction that raises the batch's alerts,
each with its ``alert.raise`` entry: one commit a batch. (The cursor then moves past those entries too when
they come right after the batch: the detectors skip their own entries.) A ``signin.spray`` alert raised in
another account commits before; a crash in between re-checks the batch, and the alerts' dedup keys refuse
what was raised already. Both tables are derived data: an account with no cursor is checked from seq 1
with its credentials' state rebuilt from the log.

Between batches the follower keeps what it knows of each account in its own memory (``detectors.Memory``:
the credentials' state, the windows' entries, the last alert of each kind), current at the cursor it last
saved: a batch then costs one read of its entries, one of the policy and one transaction for its alerts,
the cursor and the changed states, whatever it holds, and checking an entry costs no query. The
memory is a cache of the log: it is dropped when the cursor moved otherwise or a batch failed, and read
again from the tables and the log as the entries need it (at most 30 days of each actor's deletes and
exports, and a day of the account's failed sign-ins).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activitylog.alerts import notify, policy, store
from activitylog.alerts.detectors import FAILED_VERBS, Credential, Memory, Scan, network
from activitylog.alerts.spray import SprayMemory, rebuild_from_log
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, AlertCredential, AlertCursor, ChainHead
from activitylog.log.follow import entries_after

log = logging.getLogger("activitylog.alerts")

_entries = cast(Table, ActivityEntry.__table__)
_cursors = cast(Table, AlertCursor.__table__)
_credentials = cast(Table, AlertCredential.__table__)
BATCH = 500
_DIALECTS: dict[str, Any] = {"postgresql": postgresql, "sqlite": sqlite}


class AlertFollower:
    def __init__(self, db: Database, settings: Settings, *, email: bool = True) -> None:
        self.db, self.settings, self.email = db, settings, email
        self.spray = SprayMemory(settings.alert_spray_accounts, settings.alert_spray_minutes)
        self._spray_rebuilt = False  # from the log, before the first check (``alerts/spray.py``)
        # What the detectors know of each account between batches (``detectors.Memory``), current at the
        # cursor this follower last saved; dropped when the cursor moved otherwise, or a batch failed.
        self._memory: dict[str, Memory] = {}

    def due(self) -> list[tuple[str, int]]:
        """Accounts whose log moved past the detectors' cursor (a cross-account read): (account, cursor)."""
        h, c = ChainHead, AlertCursor
        with self.db.system().reader() as session:
            rows = session.execute(
                select(h.account_id, func.coalesce(c.seq, -1))
                .outerjoin(c, c.account_id == h.account_id)
                .where((c.seq.is_(None)) | (c.seq < h.seq))
            ).all()
        return [(account_id, int(seq)) for account_id, seq in rows]

    def run_once(self, max_batches: int = 20) -> int:
        """Check what every account has waiting (up to ``max_batches`` batches each); returns the
        alerts raised."""
        raised = 0
        for account_id, cursor in self.due():
            try:
                raised += self.follow(account_id, cursor, max_batches)
            except Exception:  # one account's failure (logged) never stops the others' detectors
                log.exception("alerts: account %s failed; retrying next interval", account_id)
        return raised

    def follow(self, account_id: str, cursor: int, max_batches: int = 20) -> int:
        if not self._spray_rebuilt:
            self._rebuild_spray()
        db = self.db.for_account(account_id)
        if cursor < 0:  # no cursor: start over, from the log alone (the stored states go with the first save)
            cursor = 0
            self._memory[account_id] = Memory(0, complete=True, stale_stored=True)
        known = self._memory.get(account_id)
        if known is None or known.cursor != cursor:  # new to this process, or moved by another
            memory = self._memory[account_id] = Memory(cursor, complete=False)
        else:
            memory = known
        raised = 0
        try:
            for _ in range(max_batches):
                moved, count = self._batch(db, account_id, cursor, memory)
                raised += count
                if moved == cursor:
                    break
                cursor = moved
        except BaseException:
            self._memory.pop(account_id, None)  # ahead of the cursor saved: trust only the log again
            raise
        return raised

    def _rebuild_spray(self) -> None:
        """The spray memory a previous worker had, from the log: the failed sign-ins it had checked in the
        last window (``spray.rebuild_from_log``), so a spray in progress across a restart is still seen."""
        kept = rebuild_from_log(self.db, self.spray, datetime.now(UTC))
        self._spray_rebuilt = True
        if kept:
            log.info("alerts: signin.spray remembers %d failed sign-ins from the log", kept)

    def _batch(self, db: Database, account_id: str, cursor: int, memory: Memory) -> tuple[int, int]:
        raised: list[Any] = []
        with db.read_connection() as conn:
            batch = entries_after(conn, account_id, cursor, limit=BATCH)
            if not batch.rows and batch.through == cursor:
                return cursor, 0
            rules = policy.read(conn, account_id)
            self._states(conn, account_id, batch.rows, memory)
            scan = Scan(
                self.db,
                conn,
                account_id,
                rules,
                self.settings,
                memory,
                self._loader(conn, account_id, rules.credential_new_ip.days, memory),
                self.spray,
            )
            found: dict[str, list[store.Finding]] = {}
            for row in batch.rows:
                for finding in scan.check(row):
                    found.setdefault(finding.account_id or account_id, []).append(finding)
        own = found.pop(account_id, [])
        for target, findings in found.items():  # signin.spray's, in the other accounts it spans
            raised += store.raise_alerts(self.db, target, findings)
        saved: list[int] = []
        stored: list[Credential] = []

        def save(session: Session, entries: list[dict[str, Any]]) -> None:
            # past the alert.raise entries just appended too, when they come right after the batch: the
            # detectors skip their own entries, so there is nothing in them to check
            after = entries[-1]["seq"] if entries and entries[0]["seq"] == batch.through + 1 else None
            saved[:] = [after or batch.through]
            stored[:] = self._save(session, account_id, saved[0], memory)

        # the account's alerts, its detectors' state and its cursor: one transaction, one commit
        raised += store.raise_alerts(self.db, account_id, own, then=save)
        for state in stored:
            state.dirty = False
        memory.stale_stored = False
        memory.cursor = saved[0]
        for alert in raised:
            if (
                self.email
                and (rules if alert.account_id == account_id else self._rules(alert.account_id)).email
            ):
                notify.email_alert(self.db, self.settings, alert)
        return memory.cursor, len(raised)

    def _loader(self, conn: Connection, account_id: str, days: int, memory: Memory) -> Any:
        """How a credential with no stored state gets one: from its entries, unless this follower replayed
        the account from seq 1 and so has seen every entry before (then it never acted)."""
        if memory.complete:
            return lambda actor_type, actor_id, _before: Credential(actor_type, actor_id, dirty=True)
        return lambda actor_type, actor_id, before: rebuild(
            conn, account_id, actor_type, actor_id, before, days
        )

    def _rules(self, account_id: str) -> policy.Policy:
        return policy.of_account(self.db, account_id)

    def _states(self, conn: Connection, account_id: str, rows: list[Any], memory: Memory) -> None:
        """Into ``memory``, the stored state of the credentials this batch involves that it lacks (none to
        read when this process checked the account from seq 1: it holds every state there is)."""
        if memory.complete:
            return
        wanted = {(r.actor_type, r.actor_id) for r in rows} | {
            ("api_key", r.resource_id) for r in rows if r.action in ("api_key.create", "api_key.rotate")
        }
        ids = sorted({actor_id for _, actor_id in wanted - memory.credentials.keys()})
        states = memory.credentials
        c = _credentials.c
        for start in range(0, len(ids), 500):
            for row in conn.execute(
                select(_credentials).where(
                    c.account_id == account_id, c.actor_id.in_(ids[start : start + 500])
                )
            ):
                key = (row.actor_type, row.actor_id)
                if key not in states:
                    states[key] = Credential(
                        row.actor_type,
                        row.actor_id,
                        int(row.uses),
                        row.last_seen_at,
                        row.last_ip,
                        {n: datetime.fromisoformat(t) for n, t in (row.networks or {}).items()},
                    )

    def _save(self, session: Session, account_id: str, through: int, memory: Memory) -> list[Credential]:
        """Move the cursor and store the changed credentials (returned), in the caller's transaction (the
        one that raises the batch's alerts)."""
        dialect = _DIALECTS[self.db.dialect]
        if memory.stale_stored:  # a replay from seq 1: what was stored before goes
            session.execute(delete(_credentials).where(_credentials.c.account_id == account_id))
        changed = [s for s in memory.credentials.values() if s.dirty]
        values = [
            {
                "account_id": account_id,
                "actor_type": s.actor_type,
                "actor_id": s.actor_id,
                "uses": s.uses,
                "last_seen_at": s.last_seen_at,
                "last_ip": s.last_ip,
                "networks": {n: t.isoformat() for n, t in s.networks.items()},
            }
            for s in changed
        ]
        if values:
            insert = dialect.insert(_credentials)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["account_id", "actor_type", "actor_id"],
                    set_={
                        name: insert.excluded[name]
                        for name in ("uses", "last_seen_at", "last_ip", "networks")
                    },
                ),
                values,
            )
        insert = dialect.insert(_cursors)
        session.execute(
            insert.values(account_id=account_id, seq=through).on_conflict_do_update(
                index_elements=["account_id"], set_={"seq": insert.excluded.seq}
            )
        )
        return changed


def rebuild(
    conn: Connection, account_id: str, actor_type: str, actor_id: str, before_seq: int, days: int
) -> Credential:
    """A credential's state from its own entries before ``before_seq``: its last use, whether it was used
    at all, and the networks it acted from in the ``days`` before its last use."""
    e = _entries.c
    acted = [
        e.account_id == account_id,
        e.actor_id == actor_id,
        e.actor_type == actor_type,
        e.seq < before_seq,
        *(~e.action.endswith(f".{verb}") for verb in FAILED_VERBS),
    ]
    last = conn.execute(
        select(e.occurred_at, e.ip).where(*acted).order_by(e.seq.desc()).limit(1)
    ).one_or_none()
    cred = Credential(actor_type, actor_id, dirty=True)
    if last is not None:
        cred.uses, cred.last_seen_at = 1, last.occurred_at
        since = last.occurred_at - timedelta(days=days)
        for ip, seen in conn.execute(
            select(e.ip, func.max(e.occurred_at))
            .where(*acted, e.ip.is_not(None), e.occurred_at > since)
            .group_by(e.ip)
        ):
            net = network(ip)
            if net not in cred.networks or cred.networks[net] < seen:
                cred.networks[net] = seen
        cred.last_ip = last.ip
    if actor_type == "api_key":
        made = conn.execute(
            select(e.occurred_at)
            .where(
                e.account_id == account_id,
                e.resource_type == "api_key",
                e.resource_id == actor_id,
                e.action.in_(("api_key.create", "api_key.rotate")),
                e.seq < before_seq,
            )
            .order_by(e.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
        if made is not None and (cred.last_seen_at is None or made > cred.last_seen_at):
            cred.last_seen_at = made
    return cred
