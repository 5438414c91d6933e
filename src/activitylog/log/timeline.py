"""The timeline and facet counts of a filtered slice of the log: entries per hour, day or week by actor
type, and the top actors, actions and resource types.

Counts are exact. The whole hours of the window are read from the derived counts (``log/counts.py``) when
the filter is one they can answer (actor, actor type, action, resource type, time); the minutes at either
end of the window, the entries the counts follower has not reached yet, and every other filter are counted
in the log itself, each as a seq range (``occurred_at`` never decreases along seq).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, func, select

from activitylog.db.base import Database
from activitylog.db.models import ActivityEntry
from activitylog.errors import InvalidInput
from activitylog.log import counts
from activitylog.log.actions import ACTOR_TYPES
from activitylog.log.buckets import UNITS, as_utc, floor, iso_z, truncated
from activitylog.log.query import ActivityFilter, conditions, first_seq_at_or_after

Unit = Literal["hour", "day", "week"]
MAX_BUCKETS = 1000
"""The most buckets one histogram answers (an hour bucket covers about six weeks at most)."""
FACET_SIZE = 10
DIMENSIONS = ("actor_type", "actor_id", "action", "resource_type")

_entries = cast(Table, ActivityEntry.__table__)


def choose_unit(span: timedelta) -> Unit:
    """The bucket a window gets when none is asked for: hours up to three days, days up to half a year."""
    if span <= timedelta(days=3):
        return "hour"
    return "day" if span <= timedelta(days=183) else "week"


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime


def window_of(reads: Connection, account_id: str, f: ActivityFilter, now: datetime) -> Window | None:
    """The filter's window; an open start is the account's first entry, an open end is now. None when the
    start is open and the log is empty."""
    until = f.until or now
    since = f.since
    if since is None:
        first = reads.execute(
            select(_entries.c.occurred_at)
            .where(_entries.c.account_id == account_id)
            .order_by(_entries.c.seq)
            .limit(1)
        ).scalar_one_or_none()
        if first is None:
            return None
        since = min(as_utc(first), until)
    return Window(since, max(until, since))


def bucket_starts(window: Window, unit: str) -> list[datetime]:
    start, end = floor(window.since, unit), window.until
    starts = [start]
    while starts[-1] + UNITS[unit] < end:
        starts.append(starts[-1] + UNITS[unit])
    return starts


def _bucket_count(window: Window, unit: str) -> int:
    start = floor(window.since, unit)
    return max(1, -(-(window.until - start) // UNITS[unit]))


def resolve_unit(window: Window | None, bucket: str | None) -> Unit:
    """The asked bucket, or the one chosen from the window; a window of too many buckets is refused."""
    if bucket is not None and bucket not in UNITS:
        raise InvalidInput("bucket", f"one of {', '.join(UNITS)}, not {bucket!r}")
    if window is None:
        return cast(Unit, bucket or "day")
    unit = cast(Unit, bucket or choose_unit(window.until - window.since))
    n = _bucket_count(window, unit)
    if n > MAX_BUCKETS:
        wider = [u for u in UNITS if _bucket_count(window, u) <= MAX_BUCKETS]
        hint = f"ask for bucket={wider[0]}" if wider else "narrow the window (since/until)"
        name = "bucket" if bucket else "since"
        raise InvalidInput(
            name, f"the window holds {n:,} {unit} buckets, at most {MAX_BUCKETS:,} are answered: {hint}"
        )
    return unit


# ---- counting a seq range of the log itself ----


@dataclass
class Tally:
    """Counts merged from every source: per (bucket start, actor type), and per value of each facet."""

    buckets: Counter[tuple[datetime, str]]
    facets: dict[str, Counter[str]]

    @classmethod
    def empty(cls) -> Tally:
        return cls(Counter(), {d: Counter() for d in DIMENSIONS})

    def add(
        self, start: datetime, actor_type: str, actor_id: str, action: str, resource_type: str, n: int
    ) -> None:
        self.buckets[(start, actor_type)] += n
        self.facets["actor_id"][actor_id] += n
        self.facets["action"][action] += n
        self.facets["resource_type"][resource_type] += n


def count_log_range(
    reads: Connection, account_id: str, f: ActivityFilter, low: int, high: int, unit: str, tally: Tally
) -> None:
    """Adds the entries with seq in ``[low, high)`` that match ``f``: one grouped scan of the range."""
    if low >= high:
        return
    dialect = reads.dialect.name
    ranged = replace(f, since=None, until=None, seq_window=(low, high))
    e = _entries.c
    bucket = truncated(e.occurred_at, unit, dialect).label("bucket")
    dims = [e.actor_type, e.actor_id, e.action, e.resource_type]
    statement = select(bucket, *dims, func.count()).where(*conditions(account_id, ranged, dialect))
    for row in reads.execute(statement.group_by(bucket, *dims)):
        tally.add(as_utc(row[0]), row[1], row[2], row[3], row[4], int(row[5]))


def _seqs_at(reads: Connection, account_id: str, instants: Iterable[datetime]) -> dict[datetime, int]:
    """The seq of the first entry at or after each instant (one past the last entry if none)."""
    ordered = sorted(set(instants))
    after_last = (
        func.coalesce(
            select(func.max(_entries.c.seq)).where(_entries.c.account_id == account_id).scalar_subquery(), 0
        )
        + 1
    )
    row = reads.execute(select(*(first_seq_at_or_after(account_id, i, after_last) for i in ordered))).one()
    return {i: int(s) for i, s in zip(ordered, row, strict=True)}


def tally(reads: Connection, account_id: str, f: ActivityFilter, window: Window, unit: str) -> Tally:
    """Every matching entry of the window counted once: from the derived counts where they answer, from
    the log for the rest."""
    out = Tally.empty()
    plan = counts.plan(reads, account_id, f, window.since, window.until)
    seqs = _seqs_at(reads, account_id, [window.since, window.until, *plan.log_edges])
    if plan.covered is None:
        count_log_range(reads, account_id, f, seqs[window.since], seqs[window.until], unit, out)
        return out
    low, high = plan.covered
    count_log_range(reads, account_id, f, seqs[window.since], seqs[low], unit, out)
    count_log_range(reads, account_id, f, seqs[high], seqs[window.until], unit, out)
    # inside the covered hours, what the follower has not counted yet
    count_log_range(reads, account_id, f, max(seqs[low], plan.through_seq + 1), seqs[high], unit, out)
    counts.add_counted(reads, account_id, f, plan, unit, out)
    return out


# ---- the two answers ----


@dataclass(frozen=True)
class Summary:
    """The histogram and the facets of one filtered window, from one count of it."""

    unit: Unit
    window: Window | None
    counted: Tally
    names: dict[str, str | None]

    def histogram(self) -> dict[str, Any]:
        if self.window is None:
            return {"bucket": self.unit, "buckets": []}
        buckets = []
        for start in bucket_starts(self.window, self.unit):
            by_type = {t: self.counted.buckets.get((start, t), 0) for t in ACTOR_TYPES}
            buckets.append({"start": iso_z(start), "count": sum(by_type.values()), "by_actor_type": by_type})
        return {"bucket": self.unit, "buckets": buckets}

    def facets(self) -> dict[str, Any]:
        return {
            "actor": [
                {"id": a, "name": self.names.get(a), "count": n}
                for a, n in top(self.counted.facets["actor_id"])
            ],
            "action": [{"value": v, "count": n} for v, n in top(self.counted.facets["action"])],
            "resource_type": [{"value": v, "count": n} for v, n in top(self.counted.facets["resource_type"])],
        }


def summarize(db: Database, account_id: str, f: ActivityFilter, bucket: str | None, now: datetime) -> Summary:
    """Count the filtered window once (``bucket`` as asked, or chosen from the window)."""
    with db.read_connection() as reads:
        window = window_of(reads, account_id, f, now)
        unit = resolve_unit(window, bucket)
        if window is None:
            return Summary(unit, None, Tally.empty(), {})
        try:
            counted = tally(reads, account_id, f, window, unit)
            summary = Summary(unit, window, counted, {})
            summary.histogram()  # every bucket's start and end is a date-time
        except OverflowError:
            raise InvalidInput(
                "until", "too close to the end of year 9999 for its last bucket to end"
            ) from None
        names = actor_names(reads, account_id, [a for a, _ in top(counted.facets["actor_id"])])
    return Summary(unit, window, counted, names)


def top(counter: Counter[str], size: int = FACET_SIZE) -> list[tuple[str, int]]:
    """Largest first; equal counts by value, so the order never depends on the engine."""
    return sorted(((v, n) for v, n in counter.items() if n > 0), key=lambda vn: (-vn[1], vn[0]))[:size]


def actor_names(reads: Connection, account_id: str, ids: list[str]) -> dict[str, str | None]:
    """Each actor as the log last named it (one index probe each)."""
    e = _entries.c
    names: dict[str, str | None] = {}
    for actor in ids:
        names[actor] = reads.execute(
            select(e.actor_name)
            .where(e.account_id == account_id, e.actor_id == actor)
            .order_by(e.seq.desc())
            .limit(1)
        ).scalar_one_or_none()
    return names
