"""Verify runs: one verify per account and mode at a time, across every web process, with progress.

A full verify re-hashes every entry, which takes seconds at a million entries; letting every reader start
one would let anyone with read access keep the database busy. A request for an account whose verify is
running joins that run, whichever process of ``serve --processes N`` runs it, and gets its verdict; the
dashboard shows its progress.

The walk runs on a thread of the process that started it. The ``verify_runs`` row of the account and mode
(migration 0018) is what every process reads: who runs it, how far it got, a heartbeat, and the verdict
once done. A run whose heartbeat stops (its process died mid-walk) is started afresh by the next request.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from activitylog.alerts import integrity
from activitylog.db.base import Database
from activitylog.db.models import ChainHead, VerifyRunState
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected
from activitylog.log.verify import Verdict, verify_account

HEARTBEAT_SECONDS = 1.0
"""How often the running walk says how far it got (and that it is alive)."""
STALE_AFTER = timedelta(seconds=30)
"""A run silent this long is taken for dead: the next request starts another."""
POLL_SECONDS = 0.2
"""How often a request waiting on another process's run reads its row."""


def _mode(incremental: bool) -> str:
    return "incremental" if incremental else "full"


@dataclass(frozen=True)
class VerifyRun:
    """A run as its row says at one moment."""

    account_id: str
    incremental: bool
    total: int
    checked: int
    started: datetime
    heartbeat: datetime
    finished: datetime | None
    verdict: dict[str, Any] | None
    """The API's answer (``ok``, ``checked``, ``head``, ``first_bad_seq``, ``reason``, ``mode``,
    ``signed_size``, …) once the run is done."""

    @classmethod
    def of(cls, row: VerifyRunState) -> VerifyRun:
        return cls(
            row.account_id,
            row.mode == "incremental",
            row.total,
            row.checked,
            row.started_at,
            row.heartbeat_at,
            row.finished_at,
            row.result,
        )

    @property
    def percent(self) -> int:
        return 100 if self.verdict else min(99, int(100 * self.checked / self.total) if self.total else 0)

    @property
    def seconds(self) -> float:
        return ((self.finished or self.heartbeat) - self.started).total_seconds()

    def stale(self, now: datetime) -> bool:
        return self.verdict is None and self.heartbeat < now - STALE_AFTER

    def as_api(self) -> dict[str, Any]:
        assert self.verdict is not None
        return self.verdict


class _Progress:
    """The seq the walk has reached, set by the walk and read by its heartbeat."""

    seq = 0

    def reached(self, seq: int) -> None:
        self.seq = seq


class VerifyRuns:
    def __init__(self, db: Database, signer: CheckpointSigner) -> None:
        self.db, self.signer = db, signer
        self.runner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._walking: dict[tuple[str, str], threading.Event] = {}

    def latest(self, account_id: str) -> VerifyRun | None:
        """The account's most recently started run, of either mode, wherever it runs."""
        with self.db.for_account(account_id).reader() as session:
            rows = session.scalars(select(VerifyRunState).where(VerifyRunState.account_id == account_id))
            runs = [VerifyRun.of(row) for row in rows]
        return max(runs, key=lambda r: r.started) if runs else None

    def start(self, account_id: str, *, incremental: bool = False) -> VerifyRun:
        """The run going for this account and mode (in any process), or a new one on a thread of this one."""
        mode = _mode(incremental)
        with self._lock:  # one claim at a time in this process; the row lock orders the processes
            run, claimed = self._claim(account_id, mode)
            if claimed:
                done = self._walking[(account_id, mode)] = threading.Event()
                threading.Thread(
                    target=self._walk, args=(run, done), name=f"verify-{account_id}", daemon=True
                ).start()
        return run

    def verify(self, account_id: str, *, incremental: bool = False) -> VerifyRun:
        """Start or join the run and wait for its verdict."""
        run = self.start(account_id, incremental=incremental)
        key = (account_id, _mode(incremental))
        while True:
            with self._lock:
                mine = self._walking.get(key)
            if mine is not None:
                mine.wait()
            current = self._read(account_id, key[1])
            if current is not None and current.started >= run.started and current.verdict is not None:
                return current
            if current is None or current.stale(datetime.now(UTC)):
                run = self.start(account_id, incremental=incremental)  # its process died: walk again
            else:
                time.sleep(POLL_SECONDS)

    def _read(self, account_id: str, mode: str) -> VerifyRun | None:
        with self.db.for_account(account_id).reader() as session:
            row = session.get(VerifyRunState, (account_id, mode))
            return VerifyRun.of(row) if row is not None else None

    def _claim(self, account_id: str, mode: str) -> tuple[VerifyRun, bool]:
        """Join the live run of this account and mode, or take the row for a new one (``True``)."""
        for attempt in range(2):
            try:
                return self._claim_once(account_id, mode)
            except IntegrityError:  # another process inserted the first row at the same moment
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _claim_once(self, account_id: str, mode: str) -> tuple[VerifyRun, bool]:
        now = datetime.now(UTC)
        with self.db.for_account(account_id).writer() as session:
            row = session.get(VerifyRunState, (account_id, mode), with_for_update=True)
            if row is not None and not VerifyRun.of(row).stale(now) and row.finished_at is None:
                return VerifyRun.of(row), False
            head = session.execute(select(ChainHead.seq).where(ChainHead.account_id == account_id))
            if row is None:
                row = VerifyRunState(account_id=account_id, mode=mode)
                session.add(row)
            row.runner, row.started_at, row.heartbeat_at, row.finished_at = self.runner, now, now, None
            row.total, row.checked, row.signed_size, row.result = (
                head.scalar_one_or_none() or 0,
                0,
                None,
                None,
            )
            session.commit()
            return VerifyRun.of(row), True

    def _walk(self, run: VerifyRun, done: threading.Event) -> None:
        walked, stop = _Progress(), threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(run, walked, stop), daemon=True)
        beat.start()
        signed_size: int | None = None
        verdict: Verdict | None = None
        try:
            anchor = self.signer.last_signed(run.account_id)
            signed_size = anchor.size if anchor else None
            with self.db.for_account(run.account_id).reader() as session:
                verdict = verify_account(
                    session, run.account_id, anchor, incremental=run.incremental, progress=walked.reached
                )
        except HistoryRejected as exc:
            verdict = integrity.rejected(exc)
        except Exception as exc:  # the run must end, and say why, whatever happens
            verdict = Verdict(False, 0, reason=f"could not verify: {type(exc).__name__}: {exc}")
            raise
        finally:
            stop.set()
            beat.join()
            final = verdict or Verdict(False, 0, reason="could not verify")
            if not final.ok:
                self._report(run.account_id, final)  # before the waiters hear the verdict: raised by then
            result = {**final.as_api(), "mode": _mode(run.incremental), "signed_size": signed_size}
            self._publish(run, checked=final.checked, signed_size=signed_size, result=result)
            with self._lock:
                self._walking.pop((run.account_id, _mode(run.incremental)), None)
            done.set()

    def _report(self, account_id: str, verdict: Verdict) -> None:
        """A failed verify is an ``integrity.failure`` alert (one open per failure)."""
        integrity.verify_failed(self.db, self.signer.settings, account_id, verdict)

    def _heartbeat(self, run: VerifyRun, walked: _Progress, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            self._publish(run, checked=walked.seq)

    def _publish(self, run: VerifyRun, **fields: Any) -> None:
        """Write how far the run got (and, at the end, its verdict) to its row, if the row is still its."""
        now = datetime.now(UTC)
        with self.db.for_account(run.account_id).writer() as session:
            row = session.get(VerifyRunState, (run.account_id, _mode(run.incremental)), with_for_update=True)
            if row is None or row.runner != self.runner or row.started_at != run.started:
                return  # taken over after this process was thought dead: the newer run owns the row
            row.heartbeat_at = now
            row.checked = fields["checked"]
            if "result" in fields:
                row.finished_at, row.signed_size, row.result = now, fields["signed_size"], fields["result"]
            session.commit()
