"""NATS JetStream delivery against the real server at ACTIVITYLOG_NATS_URL (default 127.0.0.1:4222): the
subject per account and action, Nats-Msg-Id, the JetStream stream created with a duplicate window longer
than the longest retry, and a replay that JetStream de-duplicates."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from sqlalchemy import update

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import StreamCursor
from activitylog.relay.jetstream import DUPLICATE_WINDOW_SECONDS, jetstream_name
from activitylog.relay.relay import MAX_RETRY, StreamRelay
from activitylog.services import streams
from factories import cli_uow
from test_stream_delivery import _account, _work

NATS_URL = os.environ.get("ACTIVITYLOG_NATS_URL", "nats://127.0.0.1:4222")


def _nats_up() -> bool:
    parts = urlsplit(NATS_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=1):
            return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _nats_up(), reason=f"no NATS server at {NATS_URL} (.ci/run starts one)")


async def _stored(name: str) -> tuple[list[Any], Any]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        sub = await js.pull_subscribe(">", durable=None, stream=name)
        messages = []
        while True:
            try:
                batch = await sub.fetch(100, timeout=1)
            except nats.errors.TimeoutError:
                break
            messages.extend(batch)
            if len(messages) >= info.state.messages:
                break
        return messages, info
    finally:
        await nc.close()


async def _delete(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


def test_entries_reach_jetstream_once_per_id_in_order(db: Database) -> None:
    subject = f"altest{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=db.url, nats_url=NATS_URL, stream_timeout_seconds=5)
    account = _account(db)
    created = streams.create_stream(
        cli_uow(db, account), {"name": "Bus", "type": "nats", "subject": subject}, settings
    )
    _work(db, account, 4)
    relay = StreamRelay(db, settings)
    try:
        deadline = time.monotonic() + 30
        while (
            streams.view(db.for_account(account), created.stream)["lag_seconds"]
            and time.monotonic() < deadline
        ):
            relay.run_once()
            relay.drain()
            time.sleep(0.05)
        start = streams.view(db.for_account(account), created.stream)["delivered_seq"] - 4
        streams.replay_stream(cli_uow(db, account), created.stream.id, start)  # sends seq start.. again
        for _ in range(20):
            relay.run_once()
            relay.drain()
        messages, info = asyncio.run(_stored(jetstream_name(subject)))
    finally:
        relay.close()
    try:
        assert info.config.duplicate_window >= MAX_RETRY
        assert DUPLICATE_WINDOW_SECONDS > MAX_RETRY
        ids = [m.headers["Nats-Msg-Id"] for m in messages]
        assert len(ids) == len(set(ids)), "the replay's duplicates were dropped by JetStream"
        entries = [
            m for m in messages if m.subject.endswith(("list.create", "stream.create", "stream.replay"))
        ]
        assert [m.subject for m in entries[:5]] == [f"{subject}.{account}.stream.create"] + [
            f"{subject}.{account}.list.create"
        ] * 4
        seqs = [int(i.rsplit(":", 1)[1]) for i in ids if ":checkpoint:" not in i]
        assert seqs == sorted(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert entries[-1].subject == f"{subject}.{account}.stream.replay"
    finally:
        asyncio.run(_delete(jetstream_name(subject)))


async def _limited(subject: str, max_msgs: int) -> None:
    """The JetStream stream for ``subject``, made beforehand with room for ``max_msgs`` messages only (and
    new ones refused past it), or that limit changed."""
    from nats.js.api import DiscardPolicy, StreamConfig

    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        config = StreamConfig(
            name=jetstream_name(subject),
            subjects=[f"{subject}.>"],
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_msgs=max_msgs,
            discard=DiscardPolicy.NEW,
        )
        try:
            await js.stream_info(jetstream_name(subject))
            await js.update_stream(config)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
    finally:
        await nc.close()


def _retry_now(db: Database, account: str, stream_id: str) -> None:
    """Skip the backoff of a failing stream (the test is not about it)."""
    with db.for_account(account).writer() as session:
        session.execute(
            update(StreamCursor)
            .where(StreamCursor.account_id == account, StreamCursor.stream_id == stream_id)
            .values(next_attempt_at=None)
        )
        session.commit()


def test_a_window_refused_midway_moves_the_cursor_past_the_acknowledged_part_only(db: Database) -> None:
    """A window of publishes whose 4th is refused by the server (its stream is full) counts the first 3,
    retries from the 4th, and once there is room every entry is stored once, in seq order."""
    subject = f"altest{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=db.url, nats_url=NATS_URL, stream_timeout_seconds=5)
    asyncio.run(_limited(subject, 3))
    account = _account(db)
    body = {"name": "Bus", "type": "nats", "subject": subject, "filter": {"action": "list.*"}}
    stream = streams.create_stream(cli_uow(db, account), body, settings).stream
    _work(db, account, 8)
    relay = StreamRelay(db, settings)
    try:
        relay.run_once()
        relay.drain()
        view = streams.view(db.for_account(account), stream)
        deliveries = streams.recent_deliveries(db.for_account(account), account, stream.id)
        ok = sorted(d["seq"] for d in deliveries if d["error"] is None)
        failed = [d for d in deliveries if d["error"]]
        assert view["state"] == "failing" and len(ok) == 3 and view["delivered_seq"] == ok[-1]
        assert [d["seq"] for d in failed] == [ok[-1] + 1] and "maximum messages" in failed[0]["error"]
        asyncio.run(_limited(subject, 1000))
        deadline = time.monotonic() + 60
        while streams.view(db.for_account(account), stream)["lag_seconds"] and time.monotonic() < deadline:
            _retry_now(db, account, stream.id)
            relay.run_once()
            relay.drain()
        messages, _ = asyncio.run(_stored(jetstream_name(subject)))
        assert streams.view(db.for_account(account), stream)["state"] == "active"
    finally:
        relay.close()
        asyncio.run(_delete(jetstream_name(subject)))
    seqs = [int(m.headers["Nats-Msg-Id"].rsplit(":", 1)[1]) for m in messages]
    assert len(seqs) == 8 and seqs == sorted(set(seqs))
