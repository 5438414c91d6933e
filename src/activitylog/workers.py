"""Background work: the scheduler, the dispatcher, the checkpointer, the stream relay, the purger and
the alert detectors.

They run in a process of their own, never in the web server's: ``activitylog worker`` runs them, and
``serve`` starts one such process beside itself (:class:`WorkerProcess`) and stops it when it stops. A big
send then costs the API neither the interpreter's lock (the GIL) nor, for long, SQLite's write lock: the
dispatcher commits a batch of recipients at a time and pauses between batches (``services/dispatcher.py``),
and the worker's threads run at a lower CPU priority (``ACTIVITYLOG_WORKER_NICE``), so requests come first on
a small machine. All but the stream relay's: it does little per event but does it one event at a time, in
order, and at that priority beside busy web processes it fell seconds behind (PostgreSQL, 130 API writes a
second on two cores: webhook lag p95 9-15 s niced, 0.7-0.9 s not; bench/RESULTS-streams.md).

If the worker process exits while ``serve`` runs (a crash, an out-of-memory kill), ``serve`` logs it and
starts another after a pause that doubles while it keeps failing soon after starting (1 s up to 60 s):
everything it does resumes from the database (claims, schedules, the signer's memory), so a restart loses
nothing. The worker watches its parent too, and exits if ``serve`` went away without stopping it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

from activitylog import metrics, worker_metrics
from activitylog.alerts import integrity
from activitylog.alerts.follower import AlertFollower
from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log import counts
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected, checkpoint_all
from activitylog.log.signing import load_signer
from activitylog.relay.relay import StreamRelay
from activitylog.services import dispatcher, retention, scheduler
from activitylog.services.mailer import open_mailer

log = logging.getLogger("activitylog.workers")


class Periodic:
    """Runs ``run_once`` every ``interval`` seconds on a daemon thread until stopped."""

    name = "periodic"
    niced = True
    """Whether its thread runs at the worker's lower priority (``settings.worker_nice``)."""

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
        if self.niced:
            lower_priority(self.settings.worker_nice)
        while True:
            try:
                done = self.run_once()
                if done:
                    log.info("%s: %d done", self.name, done)
            except Exception:  # keep going through a transient database or relay error
                log.exception("%s failed; retrying next interval", self.name)
            if self._stop.wait(self.interval):
                return


def lower_priority(nice: int) -> None:
    """Lower the calling thread's CPU priority by ``nice`` (Linux schedules threads one by one; threads it
    starts later inherit it). Raising it back would need privileges, so the process is never niced whole."""
    if nice:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


class Checkpointer(Periodic):
    """Signs a checkpoint of every account whose log moved, every ``checkpoint_interval_seconds``: each one
    advances the signer's memory, the anchor ``verify`` and the signer itself check the database against."""

    name = "checkpointer"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.checkpoint_interval_seconds)

    def run_once(self) -> int:
        signer = CheckpointSigner(self.settings, load_signer(self.settings))
        return checkpoint_all(self.db, signer, self._rejected)

    def _rejected(self, account_id: str, refused: HistoryRejected) -> None:
        integrity.report(self.db, self.settings, account_id, refused.message)


class Purger(Periodic):
    """Purges every account's entries past its retention that no legal hold covers, every
    ``purge_interval_seconds`` (``services/retention.py``)."""

    name = "purger"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.purge_interval_seconds)

    def run_once(self) -> int:
        purged = 0
        for account_id in retention.account_ids(self.db):
            try:  # one account's failure (logged) does not keep the others from their retention
                purged += retention.purge_account(self.db, account_id).plan.count
            except Exception:
                log.exception("purger: account %s failed; retrying next interval", account_id)
        return purged


class CountsFollower(Periodic):
    """Keeps the activity page's derived counts (``log/counts.py``) up with every account's log, every
    ``counts_interval_seconds``: after entries commit, never on their commit path."""

    name = "counts"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.counts_interval_seconds)

    def run_once(self) -> int:
        done = 0
        for account_id in counts.accounts_behind(self.db):
            if self._stop.is_set():
                break
            try:
                done += counts.catch_up(self.db, account_id, stop=self._stop)
            except Exception:
                log.exception("counts: account %s failed; retrying next interval", account_id)
        return done


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
            return len(started) + sum(
                dispatcher.dispatch(self.db, b, mailer, now, self._stop)
                for b in work
                if not self._stop.is_set()
            )
        finally:
            mailer.close()


class StreamRelayWorker(Periodic):
    """Hands every stream with entries to deliver to the relay's threads, every
    ``stream_interval_seconds`` (``relay/relay.py``)."""

    name = "stream-relay"
    niced = False  # one event in flight per stream: its lag is its priority (see the module's docstring)

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.stream_interval_seconds)
        self.relay = StreamRelay(db, settings)

    def run_once(self) -> int:
        self.relay.run_once()
        return 0  # deliveries are logged per stream; a poll is not news

    def stop(self) -> None:
        super().stop()
        self.relay.close()


class MetricsWriter(Periodic):
    """Writes this process's metrics every second for serve's ``/metrics`` to add (``worker_metrics``)."""

    name = "metrics-writer"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, 1.0 if settings.metrics and settings.worker_metrics_dir else 0)

    def run_once(self) -> int:
        worker_metrics.write(metrics.REGISTRY, self.settings.worker_metrics_dir)
        return 0

    def stop(self) -> None:
        super().stop()
        if self.interval:
            worker_metrics.remove(self.settings.worker_metrics_dir)


class AlertWorker(Periodic):
    """Runs the detectors over every account's new entries, every ``alert_interval_seconds``
    (``alerts/follower.py``): short, so an alert comes within a second or so of its entry's commit."""

    name = "alerts"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings, settings.alert_interval_seconds)
        self.follower = AlertFollower(db, settings)

    def run_once(self) -> int:
        return self.follower.run_once()


WORKER_RESTARTS = metrics.counter(
    "activitylog_worker_restarts", "Times serve restarted its worker process after it exited"
)
WORKER_UP = metrics.gauge("activitylog_worker_up", "1 while serve's worker process runs, else 0")


def run_workers(
    db: Database, settings: Settings, stop: threading.Event, parent_pid: int | None = None
) -> None:
    """The worker process's body: the checkpointer, the broadcast worker, the stream relay, the purger and
    the metrics writer on threads of their own until
    ``stop`` is set (SIGTERM, SIGINT) or, when ``parent_pid`` is given, the parent is gone."""
    workers: list[Periodic] = [
        Checkpointer(db, settings),
        BroadcastWorker(db, settings),
        StreamRelayWorker(db, settings),
        Purger(db, settings),
        CountsFollower(db, settings),
        MetricsWriter(db, settings),
        AlertWorker(db, settings),
    ]
    for worker in workers:
        worker.start()
    lower_priority(settings.worker_nice)  # this thread only waits; the threads it starts from now on too
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("worker: the serve process %d is gone; stopping", parent_pid)
                break
            stop.wait(1.0)
    finally:
        for worker in workers:
            worker.stop()


def stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


class WorkerProcess:
    """``serve``'s worker: ``activitylog worker`` as a child process, restarted when it exits."""

    FIRST_DELAY, MAX_DELAY = 1.0, 60.0
    HEALTHY_AFTER = 60.0  # a worker that ran this long before it exited restarts after FIRST_DELAY again
    STOP_TIMEOUT = 30.0  # a worker mid-batch finishes it; then SIGKILL

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [
            sys.executable,
            "-m",
            "activitylog",
            "worker",
            "--parent-pid",
            str(os.getpid()),
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="worker-supervisor", daemon=True)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        # stdout and stderr are serve's own: the worker's JSON log lines join the server's
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)  # noqa: S603  (our own command)
        WORKER_UP.set(1)
        log.info(
            "worker process %d started", self.process.pid, extra={"fields": {"worker_pid": self.process.pid}}
        )

    def _supervise(self) -> None:
        delay = self.FIRST_DELAY
        while not self._stop.is_set():
            process = self.process
            assert process is not None
            started = time.monotonic()
            while process.poll() is None:
                if self._stop.wait(0.5):
                    return
            WORKER_UP.set(0)
            if self._stop.is_set():
                return
            ran = time.monotonic() - started
            delay = self.FIRST_DELAY if ran >= self.HEALTHY_AFTER else delay
            fields = {"worker_pid": process.pid, "exit_code": process.returncode, "restart_in_s": delay}
            log.error(
                "worker process %d exited with %s; restarting in %.0f s",
                process.pid,
                process.returncode,
                delay,
                extra={"fields": fields},
            )
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, self.MAX_DELAY)
            self.restarts += 1
            WORKER_RESTARTS.inc()
            self._spawn()

    def stop(self) -> None:
        """SIGTERM, wait for the current batch to finish, SIGKILL after ``STOP_TIMEOUT``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=self.STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        WORKER_UP.set(0)
        log.info("worker process %d stopped", process.pid, extra={"fields": {"worker_pid": process.pid}})
