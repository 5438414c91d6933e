"""The process's Prometheus metrics, and the small API features use to add their own.

Every layer may count here (it imports nothing of the project), so the recorder, the export and the web
layer report into one registry, which ``GET /metrics`` renders when ``ACTIVITYLOG_METRICS=true``. A feature
registers its metrics where it lives, once, by name::

    from activitylog import metrics

    LAG = metrics.gauge("activitylog_stream_lag_seconds", "How far each stream is behind", ["stream"])
    LAG.labels(stream_id).set(seconds)

or hands over a collector that yields its samples at scrape time (``metrics.register(collector)``), e.g.
one that reads every stream's cursor. Asking again for a name that exists returns the same metric, so a
module imported twice (tests, reloads) does not fail; asking for it with another type or labels does.

The figures are this process's; the worker processes' are added to ``serve``'s ``/metrics`` from the files
they write (``worker_metrics``; docs/api.md, "Operating it").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger("activitylog.metrics")
REGISTRY = CollectorRegistry(auto_describe=True)

M = TypeVar("M", Counter, Gauge, Histogram)
_metrics: dict[str, Counter | Gauge | Histogram] = {}
_lock = threading.Lock()

# Latencies from a fraction of a millisecond (an append, a health check) to a long export.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _get(kind: type[M], name: str, documentation: str, labelnames: Sequence[str], **kwargs: Any) -> M:
    with _lock:
        existing = _metrics.get(name)
        if existing is None:
            created = kind(name, documentation, labelnames, registry=REGISTRY, **kwargs)
            _metrics[name] = created
            return created
    if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labelnames):
        raise ValueError(f"metric {name} exists as another {type(existing).__name__} or with other labels")
    return existing


def counter(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Counter:
    """A counter (Prometheus adds ``_total`` to its name if it lacks it)."""
    return _get(Counter, name, documentation, labelnames)


def gauge(name: str, documentation: str, labelnames: Sequence[str] = ()) -> Gauge:
    return _get(Gauge, name, documentation, labelnames)


def histogram(
    name: str, documentation: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
) -> Histogram:
    return _get(Histogram, name, documentation, labelnames, buckets=buckets)


class _Guarded(Collector):
    """A feature's collector whose failure at a scrape costs its own samples only: /metrics keeps answering
    (and says the rest) while, say, the database the collector reads is down."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def describe(self) -> list[Metric]:
        describe = getattr(self.inner, "describe", None)
        return list(describe()) if describe is not None else self.collect()

    def collect(self) -> list[Metric]:
        try:
            return list(self.inner.collect())
        except Exception:
            log.warning(
                "metrics: %s failed; its samples are left out of this scrape", type(self.inner).__name__
            )
            return []


_guarded: dict[int, _Guarded] = {}


def counted() -> CollectorRegistry:
    """The counters and histograms alone, without the gauges and the collectors that read the database at
    each scrape: what one of several web processes shares for the others to sum (``worker_metrics``)."""
    registry = CollectorRegistry(auto_describe=True)
    with _lock:
        for metric in _metrics.values():
            if isinstance(metric, Counter | Histogram):
                registry.register(metric)
    return registry


def register(collector: Collector) -> None:
    """A collector of a feature's own, asked for its samples at every scrape. If it raises, that scrape
    leaves its samples out (and logs why) instead of failing the whole page."""
    guarded = _Guarded(collector)
    REGISTRY.register(guarded)
    _guarded[id(collector)] = guarded


def unregister(collector: Collector) -> None:
    REGISTRY.unregister(_guarded.pop(id(collector)))


# What exists today. Streams and alerts add theirs where they live, through the functions above.
HTTP_REQUESTS = counter(
    "activitylog_http_requests",
    "HTTP requests answered, by route template and status",
    ["method", "route", "status"],
)
HTTP_DURATION = histogram(
    "activitylog_http_request_duration_seconds",
    "Time to answer an HTTP request (to its last body byte), by route template",
    ["method", "route"],
)
ENTRIES_APPENDED = counter("activitylog_entries_appended", "Activity entries appended and committed")
APPEND_DURATION = histogram(
    "activitylog_append_duration_seconds",
    "Time to append one entry inside its transaction (lock or carry the head, hash, insert, tree)",
)
EXPORT_ROWS = counter("activitylog_export_rows", "Rows streamed by exports of the log", ["format"])
