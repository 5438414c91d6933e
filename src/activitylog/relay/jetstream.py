"""NATS JetStream delivery with the reference client (``nats-py``).

Each event is published to ``<subject>.<account_id>.<resource_type>.<verb>`` (checkpoints:
``<subject>.<account_id>.checkpoint``) with ``Nats-Msg-Id`` = the event's id, and counts as delivered once
JetStream acknowledges it. The JetStream stream that captures ``<subject>.>`` is created when missing, with
a duplicate window longer than the longest retry delay, so a retry (after a timeout, a crash, a restart)
of an event JetStream already stored is dropped by JetStream itself. The client runs on an event loop of
its own thread; the relay's worker threads wait on it.
"""

from __future__ import annotations

import asyncio
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


class JetStreamSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._ensured: set[str] = set()

    def _run(self, coro: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout=self.settings.stream_timeout_seconds)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"no answer within {self.settings.stream_timeout_seconds:g} s") from None

    async def _connect(self) -> Any:
        if self._nc is None or self._nc.is_closed:
            self._nc = await nats.connect(
                self.settings.nats_url,
                connect_timeout=min(self.settings.stream_timeout_seconds, 5),
                max_reconnect_attempts=-1,
                allow_reconnect=True,
            )
            self._js = self._nc.jetstream(timeout=self.settings.stream_timeout_seconds)
            self._ensured.clear()
        return self._js

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

    async def _publish(self, subject: str, full_subject: str, event: Event) -> Any:
        js = await self._connect()
        await self._ensure(js, subject)
        return await js.publish(full_subject, event.body, headers={"Nats-Msg-Id": event.id})

    def publish(self, stream: Stream, event: Event) -> Outcome:
        assert stream.subject is not None
        full = f"{stream.subject}.{stream.account_id}.{event.subject_suffix}"
        try:
            self._run(self._publish(stream.subject, full, event))
        except (NatsError, TimeoutError, OSError) as exc:
            return Outcome(False, error=f"NATS: {type(exc).__name__}: {exc}"[:500])
        return Outcome(True)

    def close(self) -> None:
        async def drain() -> None:
            if self._nc is not None and not self._nc.is_closed:
                await self._nc.close()

        try:
            self._run(drain())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
