"""Verify runs: one verify per account and mode at a time in a process, with progress.

A full verify re-hashes every entry, which takes seconds at a million entries; letting every reader start
one would let anyone with read access keep the database busy. A second request for the same account
joins the run already going and gets its verdict; the dashboard shows the run's progress.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from activitylog.alerts import integrity
from activitylog.db.base import Database
from activitylog.db.models import ChainHead
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected
from activitylog.log.verify import Verdict, verify_account

KEEP_FINISHED_SECONDS = 3600


@dataclass
class VerifyRun:
    account_id: str
    incremental: bool
    total: int
    signed_size: int | None = None
    checked: int = 0
    started: float = field(default_factory=time.time)
    finished: float | None = None
    verdict: Verdict | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def percent(self) -> int:
        return 100 if self.verdict else min(99, int(100 * self.checked / self.total) if self.total else 0)

    def as_api(self) -> dict[str, object]:
        assert self.verdict is not None
        answer: dict[str, object] = self.verdict.as_api()
        answer["mode"] = "incremental" if self.incremental else "full"
        answer["signed_size"] = self.signed_size
        return answer


class VerifyRuns:
    def __init__(self, db: Database, signer: CheckpointSigner) -> None:
        self.db, self.signer = db, signer
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, bool], VerifyRun] = {}

    def latest(self, account_id: str) -> VerifyRun | None:
        with self._lock:
            runs = [r for (a, _), r in self._runs.items() if a == account_id]
        return max(runs, key=lambda r: r.started) if runs else None

    def start(self, account_id: str, *, incremental: bool = False) -> VerifyRun:
        """The run going for this account and mode, or a new one on its own thread."""
        key = (account_id, incremental)
        with self._lock:
            running = self._runs.get(key)
            if running is not None and not running.done.is_set():
                return running
            with self.db.for_account(account_id).reader() as session:
                head = session.execute(select(ChainHead.seq).where(ChainHead.account_id == account_id))
                total = head.scalar_one_or_none() or 0
            run = self._runs[key] = VerifyRun(account_id, incremental, total)
        threading.Thread(target=self._run, args=(run,), name=f"verify-{account_id}", daemon=True).start()
        return run

    def verify(self, account_id: str, *, incremental: bool = False) -> VerifyRun:
        run = self.start(account_id, incremental=incremental)
        run.done.wait()
        return run

    def _run(self, run: VerifyRun) -> None:
        def progress(seq: int) -> None:
            run.checked = seq

        try:
            anchor = self.signer.last_signed(run.account_id)
            run.signed_size = anchor.size if anchor else None
            with self.db.for_account(run.account_id).reader() as session:
                run.verdict = verify_account(
                    session, run.account_id, anchor, incremental=run.incremental, progress=progress
                )
        except HistoryRejected as exc:
            run.verdict = Verdict(False, 0, first_bad_seq=1, reason=exc.message)
        except Exception as exc:  # the run must end, and say why, whatever happens
            run.verdict = Verdict(False, 0, reason=f"could not verify: {type(exc).__name__}: {exc}")
            raise
        finally:
            if run.verdict is None:
                run.verdict = Verdict(False, 0, reason="could not verify")
            run.finished = time.time()
            if not run.verdict.ok:
                self._report(run)  # before the waiters hear the verdict: the alert is raised by then
            run.done.set()
            self._forget_old()

    def _report(self, run: VerifyRun) -> None:
        """A failed verify is an ``integrity.failure`` alert (one open per failure)."""
        verdict = run.verdict
        assert verdict is not None
        seqs = [verdict.first_bad_seq] if verdict.first_bad_seq else []
        integrity.report(
            self.db, self.signer.settings, run.account_id, verdict.reason or "verify failed", seqs
        )

    def _forget_old(self) -> None:
        cutoff = time.time() - KEEP_FINISHED_SECONDS
        with self._lock:
            for key, run in list(self._runs.items()):
                if run.finished is not None and run.finished < cutoff:
                    del self._runs[key]
