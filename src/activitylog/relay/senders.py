"""The delivery channels of streams: webhooks (``relay.webhook``) and NATS JetStream (``relay.jetstream``),
each made when first needed and shared by every thread that delivers."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import Stream
from activitylog.ids import ulid
from activitylog.log.chain import format_instant
from activitylog.relay.events import Event, test_event
from activitylog.relay.webhook import Outcome, WebhookSender
from activitylog.services import streams
from activitylog.services.stream_metrics import ATTEMPTS


class Sender(Protocol):
    def send_event(self, stream: Stream, event: Event) -> Outcome: ...

    def send_events(self, stream: Stream, events: list[Event]) -> list[Outcome]:
        """The outcomes of ``events`` sent in order, through the first failure (the rest not sent, or
        sent but not counted: a later attempt sends them again, with the same ids)."""
        ...


class Senders:
    """The delivery channels, made when first needed and shared by every worker thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._webhook: WebhookSender | None = None
        self._nats: Any = None
        self._lock = threading.Lock()

    def send_event(self, stream: Stream, event: Event) -> Outcome:
        if stream.type == "nats":
            outcome: Outcome = self.nats().publish(stream, event)
            return outcome
        secret = streams.opened_secret(stream, self.settings)
        assert stream.url is not None and secret is not None and stream.signing is not None
        return self.webhook().send(stream.url, secret, stream.signing, event)

    def send_events(self, stream: Stream, events: list[Event]) -> list[Outcome]:
        """JetStream takes a window of events at once (``relay.jetstream``); a webhook gets one POST per
        event, each after the one before it was acknowledged (in order, per Standard Webhooks)."""
        if stream.type == "nats":
            outcomes: list[Outcome] = self.nats().publish_many(stream, events)
            return outcomes
        done = []
        for event in events:
            done.append(self.send_event(stream, event))
            if not done[-1].ok:
                break
        return done

    def webhook(self) -> WebhookSender:
        with self._lock:
            if self._webhook is None:
                self._webhook = WebhookSender(self.settings)
            return self._webhook

    def nats(self) -> Any:
        with self._lock:
            if self._nats is None:
                from activitylog.relay.jetstream import JetStreamSender  # noqa: PLC0415 (only if used)

                self._nats = JetStreamSender(self.settings)
            return self._nats

    def close(self) -> None:
        if self._webhook is not None:
            self._webhook.close()
        if self._nats is not None:
            self._nats.close()


def send_test(db: Database, sender: Sender, stream: Stream) -> dict[str, Any]:
    """Send one ``activity.test`` event to the stream's destination now and list the attempt among its
    deliveries (the API's ``POST …/test``, the dashboard's Test button, ``activitylog streams test``)."""
    event = test_event(stream.account_id, stream.id, ulid(), format_instant(datetime.now(UTC)))
    started = time.monotonic()
    outcome = sender.send_event(stream, event)
    duration = int((time.monotonic() - started) * 1000)
    ATTEMPTS.labels(stream.type, "delivered" if outcome.ok else "failed").inc()
    streams.record_test(db, stream, event.id, outcome.status_code, outcome.error, duration)
    return {
        "delivered": outcome.ok,
        "event_id": event.id,
        "status_code": outcome.status_code,
        "error": outcome.error,
        "duration_ms": duration,
    }
