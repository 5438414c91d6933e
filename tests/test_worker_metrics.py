"""The worker process's metrics on ``GET /metrics`` of ``activitylog serve`` as ``make run`` starts it: the
stream deliveries its relay counts (in the worker, another process) are summed into the web process's own,
beside each stream's lag read from the database; both engines."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from activitylog.db.base import Database
from conftest import Server, make_tenant
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
