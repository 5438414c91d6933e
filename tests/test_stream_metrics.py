"""Stream lag and failures on ``GET /metrics``, both engines: a stream whose destination fails shows its lag,
backlog, retries and the failing state; a healthy one is caught up; the relay counts its attempts."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.log.record import RequestContext
from activitylog.relay.relay import StreamRelay
from activitylog.services import lists
from activitylog.services.stream_metrics import ATTEMPTS
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import make_tenant, serving
from stream_receiver import receiving


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_show_each_streams_lag_state_and_retries(db: Database) -> None:
    settings = Settings(database_url=db.url, stream_allow_private=True, stream_timeout_seconds=2.0)
    failed_before = ATTEMPTS.labels("webhook", "failed")._value.get()
    running_ctx = serving(db, metrics=True, stream_allow_private=True)
    with running_ctx as running, receiving() as good, receiving() as bad:
        bad.answer = lambda _r: 503
        tenant = make_tenant(running)
        with tenant.key_client() as client:
            ids = {}
            for name, receiver in (("good", good), ("bad", bad)):
                body = {"name": name, "type": "webhook", "url": receiver.url}
                ids[name] = client.post("/api/v1/streams", json=body).json()["id"]
        for i in range(3):
            uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
            lists.create_list(uow, f"L{i}")
        relay = StreamRelay(db, settings)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (len(good.entries()) < 5 or not bad.received):
                relay.run_once()
                relay.drain()
                time.sleep(0.05)
        finally:
            relay.close()
        time.sleep(0.3)  # the failing stream's oldest entry has now waited a while
        samples = _samples(running.url)

    def value(name: str, stream: str, **labels: str) -> float:
        key = {"account": tenant.account_id, "stream": ids[stream], "type": "webhook", **labels}
        return samples[(name, frozenset(key.items()))]

    assert value("activitylog_stream_lag_seconds", "good") == 0
    assert value("activitylog_stream_backlog_entries", "good") == 0
    assert value("activitylog_stream_state", "good", state="active") == 1
    assert value("activitylog_stream_retry_attempts", "good") == 0
    # the failing stream waits at its first event (its own create entry), everything after it behind
    assert value("activitylog_stream_lag_seconds", "bad") > 0.2
    assert value("activitylog_stream_backlog_entries", "bad") == 4
    assert value("activitylog_stream_state", "bad", state="failing") == 1
    assert value("activitylog_stream_state", "bad", state="active") == 0
    assert value("activitylog_stream_retry_attempts", "bad") >= 1
    assert (
        value("activitylog_stream_delivered_seq", "good") - value("activitylog_stream_delivered_seq", "bad")
        == 4
    )
    assert ATTEMPTS.labels("webhook", "failed")._value.get() > failed_before
