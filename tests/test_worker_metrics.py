"""The worker process's metrics on ``GET /metrics`` of ``activitylog serve`` as ``make run`` starts it: the
stream deliveries its relay counts and the alerts its detectors raise (in the worker, another process) are
summed into the web process's own, beside each stream's lag read from the database; both engines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from activitylog.alerts.policy import ALL_KINDS
from activitylog.db.base import Database
from activitylog.db.migrate import upgrade
from activitylog.log.record import RequestContext
from activitylog.services import api_keys
from activitylog.services.uow import SYSTEM_CLI, UnitOfWork
from conftest import Server, behind_the_apps_back, make_tenant
from stream_receiver import receiving
from test_operations import serve_process

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _samples(base: str) -> tuple[Samples, str]:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return samples, text


@pytest.mark.slow
def test_serve_metrics_show_what_its_worker_process_delivered(db: Database, tmp_path: Path) -> None:
    env = {
        "ACTIVITYLOG_METRICS": "true",
        "ACTIVITYLOG_STREAM_ALLOW_PRIVATE": "true",  # the receiver is on loopback
        "ACTIVITYLOG_STREAM_INTERVAL_SECONDS": "0.1",
    }
    with receiving() as receiver, serve_process(db.url, tmp_path, **env) as (base, _process):
        tenant = make_tenant(Server(url=base, db=db))
        with tenant.key_client() as client:
            body = {"name": "SIEM", "type": "webhook", "url": receiver.url}
            stream = client.post("/api/v1/streams", json=body).json()["id"]
            for i in range(3):
                assert client.post("/api/v1/lists", json={"name": f"List {i}"}).status_code == 201
        receiver.wait_for(lambda r: len(r.entries()) >= 4, timeout=60)
        labels = {"account": tenant.account_id, "stream": stream, "type": "webhook"}
        delivered = (
            "activitylog_stream_attempts_total",
            frozenset({"type": "webhook", "outcome": "delivered"}.items()),
        )
        lag = ("activitylog_stream_lag_seconds", frozenset(labels.items()))
        backlog = ("activitylog_stream_backlog_entries", frozenset(labels.items()))
        deadline = time.monotonic() + 60  # the worker rewrites its metrics every second
        samples, text = _samples(base)
        while time.monotonic() < deadline and (
            samples.get(delivered, 0) < 4 or samples.get(backlog) != 0 or samples.get(lag) != 0
        ):
            time.sleep(0.2)
            samples, text = _samples(base)
    # the web process delivered nothing itself (it sends only test events): these are the worker's (other
    # tests' streams in a shared database may add theirs)
    assert samples.get(delivered, 0) >= 4, sorted(k for k in samples if "stream" in k[0])
    assert samples[lag] == 0 and samples[backlog] == 0
    assert samples[("activitylog_worker_up", frozenset())] == 1
    helps = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    assert len(helps) == len(set(helps)), "each metric once, the processes' samples merged"


def _raised(samples: Samples) -> dict[str, float]:
    return {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "activitylog_alerts_raised_total"
    }


@pytest.mark.slow
def test_serve_metrics_count_the_alerts_raised_by_its_worker_and_its_web_process(
    empty_database: Database, tmp_path: Path
) -> None:
    """A database of its own, so every alert in it is one this serve raised: the worker's detectors raise
    ``sensitive.change`` (counted in the worker process), the API's verify of a tampered log raises
    ``integrity.failure`` (counted in the web process); ``/metrics`` shows both, every other kind at 0."""
    db = empty_database
    upgrade(db)
    env = {"ACTIVITYLOG_METRICS": "true", "ACTIVITYLOG_ALERT_INTERVAL_SECONDS": "0.1"}
    with serve_process(db.url, tmp_path, **env) as (base, _process):
        first, _ = _samples(base)
        assert _raised(first) == dict.fromkeys(ALL_KINDS, 0), "every kind from the start, at 0"
        tenant = make_tenant(Server(url=base, db=db))  # its key has scope full: a sensitive change
        uow = UnitOfWork(db, account_id=tenant.account_id, actor=SYSTEM_CLI, context=RequestContext())
        api_keys.create_api_key(uow, name="Everything", scopes=["full"])  # and another
        with tenant.key_client() as client:

            def alerts(kind: str) -> list[dict[str, object]]:
                listed = client.get("/api/v1/alerts", params={"kind": kind})
                assert listed.status_code == 200, listed.text
                return list(listed.json()["data"])

            deadline = time.monotonic() + 60  # the worker checks every 0.1 s; generous on a busy machine
            while len(alerts("sensitive.change")) < 2:
                assert time.monotonic() < deadline, "the worker raised no sensitive.change"
                time.sleep(0.2)
            with behind_the_apps_back(db) as conn:
                conn.execute(
                    text("UPDATE activity_entries SET changes = :c WHERE account_id = :a AND seq = 2"),
                    {"c": json.dumps({"name": {"from": None, "to": "forged"}}), "a": tenant.account_id},
                )
            verdict = client.get("/api/v1/activity/verify").json()
            assert not verdict["ok"], verdict
            assert len(alerts("integrity.failure")) == 1
        expected = {**dict.fromkeys(ALL_KINDS, 0), "sensitive.change": 2, "integrity.failure": 1}
        deadline = time.monotonic() + 60  # the worker rewrites its metrics every second
        samples, text_of = _samples(base)
        while _raised(samples) != expected and time.monotonic() < deadline:
            time.sleep(0.2)
            samples, text_of = _samples(base)
    assert _raised(samples) == expected, _raised(samples)
    helps = [line.split()[2] for line in text_of.splitlines() if line.startswith("# HELP ")]
    assert helps.count("activitylog_alerts_raised_total") == 1, "one metric, both processes' samples in it"
