"""Background work that ``serve`` runs beside the web server (and ``worker`` runs on its own)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.checkpoints import CheckpointSigner, checkpoint_all
from activitylog.log.signing import load_signer
from activitylog.services import dispatcher, scheduler
from activitylog.services.mailer import open_mailer

log = logging.getLogger("activitylog.workers")


class Periodic:
    """Runs ``run_once`` every ``interval`` seconds on a daemon thread until stopped."""

    name = "periodic"

    def __init__(self, db: Database, settings: Settings, interval: float) -> None:
        self.db, self.settings, self.interval = db, settings, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> int:
        raise NotImplementedError

    def run_forever(self) -> None:
        self._run()

    def _run(self) -> None:
        while True:
            try:
                done = self.run_once()
                if done:
                    log.info("%s: %d done", self.name, done)
            except Exception:  # keep going through a transient database or relay error
                log.exception("%s failed; retrying next interval", self.name)
            if self._stop.wait(self.interval):
                return


class Checkpointer(Periodic):
    """Signs a checkpoint of every account whose log moved, every ``checkpoint_interval_seconds``: each one
    advances the signer's memory, the anchor ``verify`` and the signer itself check the database against."""

    name = "checkpointer"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.checkpoint_interval_seconds)

    def run_once(self) -> int:
        return checkpoint_all(self.db, CheckpointSigner(self.settings, load_signer(self.settings)))


class BroadcastWorker(Periodic):
    """Starts due scheduled broadcasts and delivers sending ones, every ``worker_interval_seconds``."""

    name = "broadcast-worker"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.worker_interval_seconds)

    def run_once(self) -> int:
        now = datetime.now(UTC)
        started = scheduler.start_due(self.db, now)
        work = dispatcher.sending(self.db)
        if not work:
            return len(started)
        mailer = open_mailer(self.settings)
        try:
            return len(started) + sum(dispatcher.dispatch(self.db, b, mailer, now) for b in work)
        finally:
            mailer.close()
