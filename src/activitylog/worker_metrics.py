"""The worker processes' metrics on serve's ``GET /metrics``.

What the worker counts (stream deliveries, the entries its dispatcher and scheduler append, whatever a
feature registers in ``activitylog.metrics`` there) lives in the worker's own registry, in another process.
Each worker writes its registry, in the Prometheus text format, to a file of its own in
``ACTIVITYLOG_WORKER_METRICS_DIR`` every second (written aside and renamed, so a reader never sees half a
file); ``/metrics`` reads the fresh files at each scrape and adds their samples to the web process's own:
the same metric with the same labels is summed over the processes (counters, histograms' buckets, sums and
counts), a metric only a worker has is shown as it is. A file not rewritten for ``STALE_SECONDS`` (its
worker is gone) is left out, and a worker removes its file when it stops. ``serve`` makes a directory for the
worker it starts; workers started by hand beside ``serve --no-workers`` are seen when given the same one.
With ``serve --processes N`` each web process writes its counters and histograms there too (``WebShare``),
so whichever process a scrape reaches answers for all of them. No port, no socket: a directory only the
service's user can write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from activitylog import metrics

log = logging.getLogger("activitylog.metrics")
STALE_SECONDS = 10.0
SUFFIX = ".prom"


def _own_file(directory: str, role: str = "worker") -> Path:
    return Path(directory) / f"{role}-{os.getpid()}{SUFFIX}"


def write(registry: CollectorRegistry, directory: str, role: str = "worker") -> None:
    """This process's metrics, to its file in ``directory``."""
    target = _own_file(directory, role)
    aside = target.with_suffix(".tmp")
    aside.write_bytes(generate_latest(registry))
    aside.replace(target)


def remove(directory: str, role: str = "worker") -> None:
    _own_file(directory, role).unlink(missing_ok=True)


def _fresh_families(directory: str) -> Iterator[Metric]:
    now = time.time()
    mine = f"-{os.getpid()}{SUFFIX}"
    for path in sorted(Path(directory).glob(f"*{SUFFIX}")):
        if path.name.endswith(mine):
            continue  # this process's own figures are read live from its registry
        try:
            if now - path.stat().st_mtime > STALE_SECONDS:
                continue
            text = path.read_text(encoding="utf-8")
        except OSError:  # removed meanwhile: its worker stopped
            continue
        try:
            yield from text_string_to_metric_families(text)
        except ValueError:
            log.warning("metrics: %s is not in the Prometheus text format; left out", path.name)


class WebShare:
    """One of ``serve --processes N``'s web processes writing its counters and histograms every second to
    ``web-<pid>.prom``, so whichever process answers ``/metrics`` adds the others' requests to its own.
    Gauges and the collectors that read the database are left out: every process reports those alike,
    and summing them would count them N times."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-share", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        registry = metrics.counted()
        while not self._stop.wait(1.0):
            try:
                write(registry, self.directory, role="web")
            except OSError as exc:
                log.warning("metrics: cannot write %s: %s", self.directory, exc)


class Merged:
    """This process's registry plus the fresh files of the others (the worker's, the other web
    processes'), as one registry for ``generate_latest``."""

    def __init__(self, registry: CollectorRegistry, directory: str) -> None:
        self.registry, self.directory = registry, directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for family in self.registry.collect():
            families[family.name] = family
        for family in _fresh_families(self.directory):
            if family.name.endswith("_created"):
                continue  # a counter's creation time, parsed as a family of its own: not summed
            mine = families.get(family.name)
            if mine is None:
                families[family.name] = family
                continue
            index = {(s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(mine.samples)}
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue  # a creation time is not summed; the web process's own stands
                at = index.get((sample.name, tuple(sorted(sample.labels.items()))))
                if at is None:
                    mine.samples.append(sample)
                else:
                    mine.samples[at] = mine.samples[at]._replace(value=mine.samples[at].value + sample.value)
        yield from families.values()
