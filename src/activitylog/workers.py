"""Background work that ``serve`` runs beside the web server."""

from __future__ import annotations

import logging
import threading

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.checkpoints import checkpoint_all
from activitylog.log.signing import load_signer

log = logging.getLogger("activitylog.checkpoints")


class Checkpointer:
    """Signs a checkpoint of every account whose log moved, every ``checkpoint_interval_seconds``."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> None:
        if self.settings.checkpoint_interval_seconds > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def run_once(self) -> int:
        return checkpoint_all(self.db, load_signer(self.settings))

    def _run(self) -> None:
        while not self._stop.wait(self.settings.checkpoint_interval_seconds):
            try:
                signed = self.run_once()
                if signed:
                    log.info("signed %d checkpoints", signed)
            except Exception:  # keep checkpointing through a transient database error
                log.exception("checkpointing failed; retrying next interval")
