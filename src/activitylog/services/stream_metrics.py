"""Stream lag and failures for ``GET /metrics``, read from the streams' cursors at scrape time.

The relay runs in the worker process, so what the operator needs to alert on — how far each stream is
behind, whether it is failing and since how many attempts — is read from the database when Prometheus
scrapes the web process: one statement across accounts, per stream, right whatever the worker is doing. The
relay also counts its own attempts (``activitylog_stream_attempts_total``) in the process that delivers,
which ``/metrics`` adds from the worker's metrics file (``worker_metrics``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import and_, select

from activitylog import metrics
from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry, ChainHead, Stream, StreamCursor
from activitylog.services.streams import shown_state

LABELS = ["account", "stream", "type"]
STATES = ("active", "paused", "failing", "disabled")

ATTEMPTS = metrics.counter(
    "activitylog_stream_attempts",
    "Delivery attempts this process made, by stream type and outcome (delivered, failed)",
    ["type", "outcome"],
)


class StreamCollector:
    """Every stream's cursor, as gauges: lag, backlog, delivered seq, state, attempts of a retry."""

    def __init__(self) -> None:
        self.db: Database | None = None

    def describe(self) -> Iterator[Metric]:
        yield from self._families()  # no samples: registering must not query the database

    def _families(self) -> list[Any]:
        return [
            GaugeMetricFamily(
                "activitylog_stream_lag_seconds",
                "How long the oldest entry the stream has not yet handled has waited (0 when caught up)",
                labels=LABELS,
            ),
            GaugeMetricFamily(
                "activitylog_stream_backlog_entries",
                "Entries committed after the stream's cursor (the log's size minus delivered_seq)",
                labels=LABELS,
            ),
            GaugeMetricFamily(
                "activitylog_stream_delivered_seq", "The last seq the stream has handled", labels=LABELS
            ),
            GaugeMetricFamily(
                "activitylog_stream_state",
                "1 for the stream's state (active, paused, failing, disabled), 0 for the others",
                labels=[*LABELS, "state"],
            ),
            GaugeMetricFamily(
                "activitylog_stream_retry_attempts",
                "Failed attempts so far at the event the stream is retrying (0 when it is not failing)",
                labels=LABELS,
            ),
        ]

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        if self.db is not None:
            lag, backlog, delivered, state, retries = families
            now = datetime.now(UTC)
            for row in self._rows(self.db):
                labels = [row.account_id, row.stream_id, row.type]
                waited = 0.0 if row.waiting is None else max(0.0, (now - row.waiting).total_seconds())
                lag.add_metric(labels, round(waited, 3))
                backlog.add_metric(labels, max(0, int(row.head or 0) - row.delivered_seq))
                delivered.add_metric(labels, row.delivered_seq)
                shown = shown_state(row, row)  # the row has the stream's state and the cursor's attempts
                for name in STATES:
                    state.add_metric([*labels, name], 1.0 if shown == name else 0.0)
                retries.add_metric(labels, row.attempts)
        yield from families

    @staticmethod
    def _rows(db: Database) -> list[Any]:
        c, s, h, e = StreamCursor, Stream, ChainHead, ActivityEntry
        with db.system().reader() as session:
            return list(
                session.execute(
                    select(
                        c.account_id,
                        c.stream_id,
                        s.type,
                        s.state,
                        c.delivered_seq,
                        c.attempts,
                        h.seq.label("head"),
                        e.occurred_at.label("waiting"),
                    )
                    .join(s, and_(s.account_id == c.account_id, s.id == c.stream_id))
                    .outerjoin(h, h.account_id == c.account_id)
                    .outerjoin(e, and_(e.account_id == c.account_id, e.seq == c.delivered_seq + 1))
                    .order_by(c.account_id, c.stream_id)
                ).all()
            )


COLLECTOR = StreamCollector()
_installed = threading.Lock()
_registered = False


def install(db: Database) -> None:
    """Report the streams of ``db`` on ``/metrics`` (the app's database; the last installed wins)."""
    global _registered
    COLLECTOR.db = db
    with _installed:
        if not _registered:
            metrics.register(COLLECTOR)
            _registered = True
