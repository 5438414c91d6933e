"""The delivery channels of streams: webhooks (``relay.webhook``) and NATS JetStream (``relay.jetstream``),
each made when first needed and shared by every thread that delivers."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from activitylog.config import Settings
from activitylog.db.models import Stream
from activitylog.relay.events import Event
from activitylog.relay.webhook import Outcome, WebhookSender
from activitylog.services import streams


class Sender(Protocol):
    def send_event(self, stream: Stream, event: Event) -> Outcome: ...


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
