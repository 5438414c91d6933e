"""The relay: finds streams with something to deliver and delivers each, in seq order, one worker at a time.

For each due stream a worker thread takes the stream's lease (``relay.cursor``), reads the committed
entries after its cursor (``log.follow``) and sends them in order — a webhook one POST at a time, JetStream
a window of publishes whose acknowledgements are awaited together. The cursor moves only past acknowledged
events (2xx, or JetStream's ack), a batch of them at a time (``MOVE_EVERY``), so a crash anywhere resends
at most the events since the last move, with the same ids. A failure schedules a retry with exponential
backoff (the first within 5 s, capped at 10 min) and later events wait: order is never given up. A 410
disables the stream (an entry by ``system:streams``). Streams are delivered on a pool of threads, each
stream a task of its own, so a slow or failing destination holds one thread, never the API or the other
streams.

Unfiltered streams also carry checkpoint events (the signed note of tree N, and entry N's inclusion proof)
at least every ``stream_checkpoint_entries`` entries or ``stream_checkpoint_seconds`` seconds.

A stream behind a purge steps over each purged range with an ``activity.skipped`` event (its range, the
purge run's entry, the chain's links on either side) and a delivery record saying so; an unfiltered stream
first sends a checkpoint of what it delivered before the gap, so the receiver can prove both sides.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, ChainHead, PurgedEntry, Stream, StreamCursor
from activitylog.log.chain import format_instant
from activitylog.log.checkpoints import CheckpointSigner, HistoryRejected
from activitylog.log.follow import Batch, PurgedRun, entries_after, first_purged_after, purged_run
from activitylog.log.record import Actor, RequestContext
from activitylog.log.signing import load_signer
from activitylog.log.tree_store import TreeReader
from activitylog.relay import cursor as cursors
from activitylog.relay.events import Event, checkpoint_event, entry_event, skipped_event
from activitylog.relay.senders import Sender, Senders
from activitylog.relay.webhook import Outcome
from activitylog.services import streams
from activitylog.services.stream_metrics import ATTEMPTS
from activitylog.services.uow import UnitOfWork

log = logging.getLogger("activitylog.streams")

SYSTEM_STREAMS = Actor(type="system", id="streams", name="activitylog streams")
FIRST_RETRY = 2.0  # seconds; with jitter the first retry comes within 3 s
MAX_RETRY = 600.0
BATCH = 200
SLICE_SECONDS = 5.0  # one task delivers at most this long, then lets other streams have the thread
# The cursor moves after every MOVE_EVERY acknowledged events or MOVE_SECONDS, whichever comes first (and
# before a checkpoint or a failure): one commit per event capped delivery at the database's commit rate. A
# crash in between resends at most those events, with the same ids.
MOVE_EVERY = 50
MOVE_SECONDS = 0.25
# JetStream events are published a window at a time, their acknowledgements awaited together
# (``relay.jetstream``); webhooks get one POST at a time, each after the one before it was answered.
NATS_WINDOW = 100


def retry_delay(attempts: int) -> float:
    """Seconds before retry number ``attempts`` (1 = the first): doubling from 2 s, at most 10 min,
    with up to 25% jitter below the cap so many failing streams do not retry in step."""
    delay = min(MAX_RETRY, FIRST_RETRY * 2 ** (attempts - 1))
    return float(min(MAX_RETRY, delay * (1 + random.random() / 4)))  # noqa: S311 (jitter, not a secret)


class StreamRelay:
    def __init__(self, db: Database, settings: Settings, senders: Sender | None = None) -> None:
        self.db, self.settings = db, settings
        self.senders: Sender = senders or Senders(settings)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = 3 * settings.stream_timeout_seconds + 5
        self._signer: CheckpointSigner | None = None
        self._pool = ThreadPoolExecutor(max(1, settings.stream_workers), thread_name_prefix="stream")
        self._in_flight: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def signer(self) -> CheckpointSigner:
        if self._signer is None:
            self._signer = CheckpointSigner(self.settings, load_signer(self.settings))
        return self._signer

    # ---- finding work ----
    def due(self, now: datetime) -> list[tuple[str, str]]:
        """Active streams with entries past their cursor, a checkpoint to send or due, whose retry time
        has come and whose lease is free: a cross-account read."""
        c, h = StreamCursor, ChainHead
        stale = now - timedelta(seconds=self.settings.stream_checkpoint_seconds)
        with self.db.system().reader() as session:
            rows = session.execute(
                select(c.account_id, c.stream_id)
                .join(Stream, and_(Stream.account_id == c.account_id, Stream.id == c.stream_id))
                .join(h, h.account_id == c.account_id)
                .where(
                    Stream.state == "active",
                    or_(c.next_attempt_at.is_(None), c.next_attempt_at <= now),
                    or_(c.lease_until.is_(None), c.lease_until < now),
                    or_(
                        c.delivered_seq < h.seq,
                        c.pending_checkpoint.is_not(None),
                        and_(
                            c.checkpoint_seq < c.delivered_seq,
                            c.checkpoint_at <= stale,
                        ),
                    ),
                )
            ).all()
        return [(r.account_id, r.stream_id) for r in rows]

    def run_once(self) -> int:
        """Hand every due stream not already being delivered here to a worker thread."""
        started = 0
        for key in self.due(datetime.now(UTC)):
            with self._lock:
                if key in self._in_flight:
                    continue
                self._in_flight.add(key)
            self._pool.submit(self._task, *key)
            started += 1
        return started

    def _task(self, account_id: str, stream_id: str) -> None:
        try:
            self.deliver(account_id, stream_id)
        except Exception:
            log.exception("stream %s: delivery failed", stream_id)
        finally:
            with self._lock:
                self._in_flight.discard((account_id, stream_id))

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for the deliveries in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.01)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        closer = getattr(self.senders, "close", None)
        if closer is not None:
            closer()

    # ---- delivering one stream ----
    def deliver(self, account_id: str, stream_id: str) -> int:
        """Deliver what the stream has waiting, under its lease; returns how many events went out."""
        now = datetime.now(UTC)
        if not cursors.claim(self.db, account_id, stream_id, self.owner, now, self.lease_seconds):
            return 0
        sent = 0
        try:
            deadline = time.monotonic() + SLICE_SECONDS
            while time.monotonic() < deadline:
                step = self._step(account_id, stream_id)
                if step < 0:  # ~n: n sent, and nothing more to do now
                    sent += ~step
                    break
                sent += step
        finally:
            cursors.release(self.db, account_id, stream_id, self.owner)
        return sent

    def _step(self, account_id: str, stream_id: str) -> int:
        """One round: a pending or due checkpoint, else the next batch of entries. Returns the events
        sent, or ``~sent`` (negative; -1 when none) when there is nothing more to do now: caught up with
        the head it read (no second round just to find nothing), waiting to retry, or stopped."""
        now = datetime.now(UTC)
        with self.db.for_account(account_id).reader() as reads:  # one read transaction for the round
            stream = reads.scalars(
                select(Stream).where(Stream.account_id == account_id, Stream.id == stream_id)
            ).one_or_none()
            cursor = cursors.read(reads, account_id, stream_id)
            if stream is None or cursor is None:
                return -1  # deleted meanwhile
            if stream.state != "active" or cursor.lease_owner != self.owner:
                return -1
            if cursor.next_attempt_at is not None and cursor.next_attempt_at > now:
                return -1
            unfiltered = not stream.filter
            checkpoint_first = cursor.pending_checkpoint is not None
            checkpoint_due = not checkpoint_first and unfiltered and self._checkpoint_due_by_time(cursor, now)
            if not (checkpoint_first or checkpoint_due):
                where = streams.filter_of(stream.filter)[1] if stream.filter else None
                batch = entries_after(reads, account_id, cursor.delivered_seq, limit=BATCH, where=where)
                moved_on = batch.through > cursor.delivered_seq  # else nothing new, purged or not
                gap = (
                    first_purged_after(reads, account_id, cursor.delivered_seq, batch.through)
                    if moved_on
                    else None
                )
                at_gap = gap == cursor.delivered_seq + 1
                proof_first = at_gap and unfiltered and self._checkpoint_before_gap(cursor)
                first = cursor.delivered_seq + 1
                run = purged_run(reads, account_id, first, batch.through) if at_gap else None
        if checkpoint_first:
            return self._send_checkpoint(stream, cursor)
        if checkpoint_due:
            return 0 if self._move(cursor, {"pending_checkpoint": cursor.delivered_seq}) else -1
        if proof_first:
            return 0 if self._move(cursor, {"pending_checkpoint": cursor.delivered_seq}) else -1
        if run is not None:  # the stream is at a purged range: step over it
            return self._skip(stream, cursor, run)
        caught_up = gap is None and len(batch.rows) < BATCH  # the batch reached the head it read
        if gap is not None:  # deliver up to the purged range, then step over it
            batch = Batch([row for row in batch.rows if row.seq < gap], gap - 1)
        if not batch.rows and batch.through == cursor.delivered_seq:
            return -1
        sent = 0
        acked: list[_Sent] = []  # acknowledged, the cursor not yet moved past them
        values: dict[str, Any] = {}
        moved_at = time.monotonic()
        rows, at = batch.rows, 0
        window = NATS_WINDOW if stream.type == "nats" else 1
        while at < len(rows):
            chunk = rows[at : at + window]
            if unfiltered:  # a window ends at the entry a checkpoint falls due after
                due = cursor.checkpoint_seq + self.settings.stream_checkpoint_entries
                chunk = [r for r in chunk if r.seq <= due] or chunk[:1]
            at += len(chunk)
            events = [entry_event(row, stream.format) for row in chunk]
            attempts = self._send_many(stream, events, cursor.attempts + 1 if sent == 0 else 1)
            for row, attempt in zip(chunk, attempts, strict=False):  # attempts: through the first failure
                if not attempt.outcome.ok:
                    if (
                        acked
                        and (cursor := self._move(cursor, self._delivered(cursor, values), acked)) is None
                    ):
                        return -1
                    self._failed(stream, cursor, attempt)
                    return -1
                sent += 1
                acked.append(attempt)
                values = {"delivered_seq": row.seq}
                if not unfiltered:
                    values["checkpoint_seq"] = row.seq  # filtered streams carry no checkpoints
                elif row.seq - cursor.checkpoint_seq >= self.settings.stream_checkpoint_entries:
                    values["pending_checkpoint"] = row.seq
            if (
                "pending_checkpoint" in values
                or len(acked) >= MOVE_EVERY
                or time.monotonic() - moved_at >= MOVE_SECONDS
            ):
                moved = self._move(cursor, self._delivered(cursor, values), acked)
                if moved is None:
                    return -1
                cursor, acked, moved_at = moved, [], time.monotonic()
                if cursor.pending_checkpoint is not None:
                    return sent  # the checkpoint goes next, before entry seq + 1
        if acked:
            moved = self._move(cursor, self._delivered(cursor, values), acked)
            if moved is None:
                return -1
            cursor = moved
        if batch.through > cursor.delivered_seq:  # passed over by the filter, up to the head it read
            values = {"delivered_seq": batch.through}
            if not unfiltered:
                values["checkpoint_seq"] = batch.through
            if self._move(cursor, values) is None:
                return -1
        return ~sent if caught_up else sent

    @staticmethod
    def _checkpoint_before_gap(cursor: cursors.Cursor) -> bool:
        """Whether the entries before a purged range need a checkpoint first, so that what the receiver
        holds before the gap is proven too: some were delivered since the last one. (After a skipped
        range the checkpoints count from its end: nothing was delivered there.)"""
        return cursor.delivered_seq > cursor.checkpoint_seq

    def _skip(self, stream: Stream, cursor: cursors.Cursor, run: PurgedRun) -> int:
        """Step over a purged range, saying so: an ``activity.skipped`` event to the destination (in order,
        acknowledged like any event) and a delivery record with its range."""
        with self.db.for_account(stream.account_id).read_connection() as conn:
            at = conn.execute(
                select(ActivityEntry.occurred_at).where(
                    ActivityEntry.account_id == stream.account_id, ActivityEntry.seq == run.purge_seq
                )
            ).scalar_one_or_none()
        event = skipped_event(stream.account_id, run, format_instant(at or datetime.now(UTC)))
        sent = self._send(stream, event, cursor.attempts + 1)
        if not sent.outcome.ok:
            self._failed(stream, cursor, sent)
            return -1
        log.info("stream %s: seq %d-%d were purged; skipped", stream.id, run.first, run.last)
        values = {"delivered_seq": run.last, "checkpoint_seq": run.last}
        return 1 if self._move(cursor, self._delivered(cursor, values), [sent]) else -1

    def _move(
        self, cursor: cursors.Cursor, values: dict[str, Any], attempts: list[_Sent] | None = None
    ) -> cursors.Cursor | None:
        records = [
            {
                "event_id": a.event.id,
                "seq": a.event.seq,
                "attempt": a.attempt,
                "status_code": a.outcome.status_code,
                "error": a.outcome.error,
                "duration_ms": a.duration_ms,
                "at": a.at,
            }
            for a in attempts or ()
        ]
        now = datetime.now(UTC)
        return cursors.move(
            self.db, cursor, self.owner, values, attempts=records, now=now, ttl=self.lease_seconds
        )

    @staticmethod
    def _delivered(cursor: cursors.Cursor, values: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(UTC)
        done = {"attempts": 0, "next_attempt_at": None, "last_error": None, "delivered_at": now, **values}
        if cursor.checkpoint_at is None:
            done.setdefault("checkpoint_at", now)  # the time-based checkpoint counts from the first delivery
        return done

    def _checkpoint_due_by_time(self, cursor: cursors.Cursor, now: datetime) -> bool:
        if cursor.checkpoint_seq >= cursor.delivered_seq:
            return False
        since = cursor.checkpoint_at or now
        return (now - since).total_seconds() >= self.settings.stream_checkpoint_seconds

    def _send_many(self, stream: Stream, events: list[Event], first_attempt: int) -> list[_Sent]:
        """Send ``events`` in order (a JetStream window at once, webhooks one by one); the attempts made,
        through the first failure. The first event's attempt number is ``first_attempt``."""
        started = time.monotonic()
        outcomes = self.senders.send_events(stream, events)
        took, now = int((time.monotonic() - started) * 1000), datetime.now(UTC)
        done = []
        for i, (event, outcome) in enumerate(zip(events, outcomes, strict=False)):
            ATTEMPTS.labels(stream.type, "delivered" if outcome.ok else "failed").inc()
            done.append(_Sent(event, outcome, took, first_attempt if i == 0 else 1, now))
        return done

    def _send(self, stream: Stream, event: Event, attempt_no: int) -> _Sent:
        started = time.monotonic()
        outcome = self.senders.send_event(stream, event)
        ATTEMPTS.labels(stream.type, "delivered" if outcome.ok else "failed").inc()
        return _Sent(event, outcome, int((time.monotonic() - started) * 1000), attempt_no, datetime.now(UTC))

    def _failed(self, stream: Stream, cursor: cursors.Cursor, sent: _Sent) -> None:
        """Schedule the retry of a failed attempt (and on a 410, disable the stream)."""
        now = datetime.now(UTC)
        values = {
            "attempts": sent.attempt,
            "next_attempt_at": now + timedelta(seconds=retry_delay(sent.attempt)),
            "last_error": (sent.outcome.error or "failed")[:500],
        }
        self._move(cursor, values, [sent])
        event, outcome = sent.event, sent.outcome
        log.warning("stream %s: %s failed (attempt %d): %s", stream.id, event.id, sent.attempt, outcome.error)
        if outcome.gone:
            uow = UnitOfWork(
                self.db, account_id=stream.account_id, actor=SYSTEM_STREAMS, context=RequestContext()
            )
            streams.disable_stream(uow, stream.id, f"the destination answered 410 Gone to {event.id}")

    def _send_checkpoint(self, stream: Stream, cursor: cursors.Cursor) -> int:
        size = cursor.pending_checkpoint
        assert size is not None
        done = {"pending_checkpoint": None, "checkpoint_seq": size, "checkpoint_at": datetime.now(UTC)}
        try:
            event = self.checkpoint(stream.account_id, size)
        except HistoryRejected as exc:  # the signer refuses this tree: go on, without its checkpoint
            log.error("stream %s: no checkpoint at %d: %s", stream.id, size, exc)
            return 0 if self._move(cursor, done) else -1
        sent = self._send(stream, event, cursor.attempts + 1)
        if not sent.outcome.ok:
            self._failed(stream, cursor, sent)
            return -1
        return 1 if self._move(cursor, self._delivered(cursor, done), [sent]) else -1

    def checkpoint(self, account_id: str, size: int) -> Event:
        """The checkpoint event of tree ``size``: its signed note, entry ``size`` and its audit path. An
        entry purged since the stream delivered it is named by its tombstone's hash (the receiver holds
        the entry itself)."""
        note = self.signer().sign(self.db, account_id, size)
        with self.db.for_account(account_id).reader() as session:
            row = session.execute(
                select(ActivityEntry.hash, ActivityEntry.occurred_at).where(
                    ActivityEntry.account_id == account_id, ActivityEntry.seq == size
                )
            ).one_or_none()
            if row is None:
                row = session.execute(
                    select(PurgedEntry.hash, PurgedEntry.older_than.label("occurred_at")).where(
                        PurgedEntry.account_id == account_id, PurgedEntry.seq == size
                    )
                ).one()
            path = TreeReader(session.connection(), account_id).inclusion(size, size)
        return checkpoint_event(account_id, size, row.hash, format_instant(row.occurred_at), note, path)


class _Sent:
    __slots__ = ("at", "attempt", "duration_ms", "event", "outcome")

    def __init__(self, event: Event, outcome: Outcome, duration_ms: int, attempt: int, at: datetime) -> None:
        self.event, self.outcome, self.duration_ms, self.attempt, self.at = (
            event,
            outcome,
            duration_ms,
            attempt,
            at,
        )
