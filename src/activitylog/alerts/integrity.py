"""``integrity.failure``: raised where the failure is found, not by following the log — a verify that
fails (the API's verify runs, ``services/verification.py``, and the CLI's ``activitylog verify``, both
through :func:`verify_failed`) or the checkpoint signer refusing a tree (``HistoryRejected``, where the
worker's checkpointer runs ``checkpoint_all``). One open alert per failure: the checkpointer meets a
refused tree at every interval, and says so once until someone acknowledges it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import select

from activitylog.alerts import notify, policy, store
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import Alert
from activitylog.log.checkpoints import HistoryRejected
from activitylog.log.verify import Verdict

log = logging.getLogger("activitylog.alerts")
KIND = "integrity.failure"


def report(
    db: Database, settings: Settings, account_id: str, reason: str, seqs: list[int] | None = None
) -> Alert | None:
    """Raise (and email) an integrity failure of the account, unless the same one is open already. Never
    raises: the failure it reports is already logged by its finder."""
    try:
        scoped = db.for_account(account_id)
        summary = f"Integrity failure: {reason}"[:500]
        with scoped.reader() as session:
            rules = policy.load(session, account_id)
            if not rules.integrity_failure.enabled:
                return None
            open_already = session.execute(
                select(Alert.id).where(
                    Alert.account_id == account_id,
                    Alert.kind == KIND,
                    Alert.status == "open",
                    Alert.summary == summary,
                )
            ).first()
        if open_already is not None:
            return None
        now = datetime.now(UTC)
        finding = store.Finding(KIND, summary, now, seqs or [], {"reason": reason})
        alert = store.raise_alert(db, account_id, finding)
        if alert is not None and rules.email:
            notify.email_alert(db, settings, alert)
        return alert
    except Exception:
        log.exception("alerts: could not raise the integrity failure of account %s", account_id)
        return None


def rejected(refused: HistoryRejected) -> Verdict:
    """The verdict of a verify whose anchor the signer refused (the database's tree does not extend what
    it signed): broken from seq 1."""
    return Verdict(False, 0, first_bad_seq=1, reason=refused.message)


def verify_failed(db: Database, settings: Settings, account_id: str, verdict: Verdict) -> Alert | None:
    """A verify found the account's log broken: its ``integrity.failure`` (one open per failure), the same
    whichever verify found it."""
    seqs = [verdict.first_bad_seq] if verdict.first_bad_seq else []
    return report(db, settings, account_id, verdict.reason or "verify failed", seqs)
