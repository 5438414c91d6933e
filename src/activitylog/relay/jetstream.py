"""NATS JetStream delivery with the reference client (``nats-py``).

Each event is published to ``<subject>.<account_id>.<resource_type>.<verb>`` (checkpoints:
``<subject>.<account_id>.checkpoint``) with ``Nats-Msg-Id`` = the event's id, and counts as delivered once
JetStream acknowledges it. The JetStream stream that captures ``<subject>.>`` is created when missing, with
a duplicate window longer than the longest retry delay, so a retry (after a timeout, a crash, a restart)
of an event JetStream already stored is dropped by JetStream itself. The client runs on an event loop of
its own thread; the relay's worker threads wait on it.

A window of events is published back to back, in seq order, on one connection (which the server reads,
and stores, in order), and their acknowledgements are awaited together: one round trip a window instead
of one an event. The outcomes say how far the window got: every event up to the first one not
acknowledged counts, and that one and the rest are sent again (JetStream drops the copies it stored).
The client does not reconnect by itself: publishes buffered across a reconnect could reach the new
connection after an earlier one was lost with the old, out of order; instead a lost connection fails the
window and the next attempt opens a new one.
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from activitylog.config import Settings
from activitylog.db.models import Stream
from activitylog.relay.events import Event
from activitylog.relay.webhook import Outcome

DUPLICATE_WINDOW_SECONDS = 1200.0  # twice the longest retry delay (10 min)


def jetstream_name(subject: str) -> str:
    """The JetStream stream created for a subject prefix: ``activitylog.audit`` -> ``ACTIVITYLOG_AUDIT``."""
    return subject.upper().replace(".", "_").replace("-", "_")


def _no_answer(settings: Settings) -> str:
    return f"no answer within {settings.stream_timeout_seconds:g} s"


def _failed(exc: BaseException) -> Outcome:
    return Outcome(False, error=f"NATS: {type(exc).__name__}: {exc}"[:500])


def _up_to_first_failure(outcomes: list[Outcome]) -> list[Outcome]:
    for i, outcome in enumerate(outcomes):
        if not outcome.ok:
            return outcomes[: i + 1]
    return outcomes


class JetStreamSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._ensured: set[str] = set()
        self._acks: dict[str, asyncio.Future[Outcome]] = {}  # reply token -> the publish's outcome
        self._inbox = ""
        self._token = 0
        self._connecting = asyncio.Lock()

    def _run(self, coro: Any, margin: float = 0.0) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=self.settings.stream_timeout_seconds + margin)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(_no_answer(self.settings)) from None

    async def _connect(self) -> Any:
        async with self._connecting:  # streams delivered at once share one connection, made once
            if self._nc is None or self._nc.is_closed:
                await self._open()
        return self._js

    async def _open(self) -> None:
        """A new connection, and the inbox its publishes' acknowledgements come to."""
        self._nc = await nats.connect(
            self.settings.nats_url,
            connect_timeout=min(self.settings.stream_timeout_seconds, 5),
            allow_reconnect=False,  # see above: a lost connection fails the window in flight
        )
        self._js = self._nc.jetstream(timeout=self.settings.stream_timeout_seconds)
        self._ensured.clear()
        self._acks = {}
        self._inbox = self._nc.new_inbox()
        await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_ack)

    async def _on_ack(self, msg: Any) -> None:
        """JetStream's answer to one publish: its ack, or why it did not store the message."""
        ack = self._acks.pop(msg.subject.rsplit(".", 1)[-1], None)
        if ack is None or ack.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            ack.set_result(Outcome(False, error="NATS: no JetStream stream captures the subject"))
            return
        try:
            answer = json.loads(msg.data)
        except ValueError:
            answer = {"error": {"description": "not a JetStream acknowledgement"}}
        error = answer.get("error") if isinstance(answer, dict) else {"description": "not an object"}
        if error:
            ack.set_result(
                Outcome(False, error=f"NATS: JetStream refused it: {error.get('description')}"[:500])
            )
        else:
            ack.set_result(Outcome(True))

    async def _ensure(self, js: Any, subject: str) -> None:
        """A JetStream stream captures ``<subject>.>``: an existing one is used as it is, else one is
        created with the duplicate window retries need."""
        if subject in self._ensured:
            return
        try:
            await js.find_stream_name_by_subject(f"{subject}.>")
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=jetstream_name(subject),
                    subjects=[f"{subject}.>"],
                    duplicate_window=DUPLICATE_WINDOW_SECONDS,
                )
            )
        self._ensured.add(subject)

    async def _publish(self, subject: str, prefix: str, events: list[Event]) -> list[Outcome]:
        """Publish ``events`` in order without waiting, each with a reply subject of its own, then wait
        (at most the timeout) for their acknowledgements."""
        js = await self._connect()
        await self._ensure(js, subject)
        acks: list[asyncio.Future[Outcome]] = []
        failure: Outcome | None = None
        try:
            for event in events:
                self._token += 1
                ack: asyncio.Future[Outcome] = self.loop.create_future()
                self._acks[str(self._token)] = ack
                acks.append(ack)
                await self._nc.publish(
                    f"{prefix}.{event.subject_suffix}",
                    event.body,
                    reply=f"{self._inbox}.{self._token}",
                    headers={"Nats-Msg-Id": event.id},
                )
        except (NatsError, OSError) as exc:  # the connection went: what was published may still be acked
            acks.pop().cancel()  # this one did not go out
            failure = _failed(exc)
        if acks:
            await asyncio.wait(acks, timeout=self.settings.stream_timeout_seconds)
        outcomes = []
        for ack in acks:
            if ack.done():
                outcomes.append(ack.result())
            else:
                ack.cancel()
                outcomes.append(_failed(TimeoutError(_no_answer(self.settings))))
        for token in [t for t, ack in self._acks.items() if ack.cancelled()]:
            del self._acks[token]  # never answered: a late answer finds nothing
        if failure is not None:
            outcomes.append(failure)
        return _up_to_first_failure(outcomes)

    def publish_many(self, stream: Stream, events: list[Event]) -> list[Outcome]:
        """The outcomes of the first events of ``events``, in order, through the first failure if any."""
        assert stream.subject is not None
        prefix = f"{stream.subject}.{stream.account_id}"
        try:
            outcomes: list[Outcome] = self._run(self._publish(stream.subject, prefix, events), margin=5.0)
        except (NatsError, TimeoutError, OSError) as exc:
            return [_failed(exc)]
        return outcomes

    def publish(self, stream: Stream, event: Event) -> Outcome:
        return self.publish_many(stream, [event])[0]

    def close(self) -> None:
        async def drain() -> None:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()

        try:
            self._run(drain())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
