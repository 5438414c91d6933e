"""The activity page's timeline and facet counts, as the templates draw them (``_timeline.html``,
``_facets.html``): a server-rendered SVG whose every bucket is a link that narrows the window to it, and
facet values that each link to the page with that one filter added. Both work without script; ``app.js``
only puts the times in the viewer's zone and lets a drag across buckets pick a range.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from activitylog.log.actions import ACTOR_TYPES
from activitylog.log.buckets import UNITS, iso_z
from activitylog.log.timeline import Summary

WIDTH, HEIGHT = 1000, 150
"""The drawing's own units (the SVG scales to the page's width)."""
ACTOR_LABELS = {"session": "People", "api_key": "API keys", "rule": "Rules", "system": "System"}
_SHAPES = {"hour": "%Y-%m-%d %H:%M", "day": "%Y-%m-%d", "week": "week of %Y-%m-%d"}


@dataclass(frozen=True)
class Segment:
    actor_type: str
    y: float
    height: float


@dataclass(frozen=True)
class Bar:
    start: str
    end: str
    x: float
    width: float
    count: int
    segments: list[Segment]
    label: str
    href: str
    tick: str = ""
    """The axis label under this bar, if it has one."""


@dataclass(frozen=True)
class TimelineView:
    unit: str
    bars: list[Bar]
    peak: int
    total: int
    totals: dict[str, int]
    labels: dict[str, str]
    width: int = WIDTH
    height: int = HEIGHT


def _page_url(filters: dict[str, str], **changes: str) -> str:
    """The page with ``filters`` (as the URL gave them, ``window`` included) and ``changes`` applied."""
    params = {k: v for k, v in filters.items() if k not in changes}
    if "since" in changes or "until" in changes:
        params.pop("window", None)  # an explicit range replaces the preset
    params.update(changes)
    return "/activity?" + urlencode(params)


def _when(instant: datetime, unit: str) -> str:
    return instant.strftime(_SHAPES[unit]) + " UTC"


def timeline_view(summary: Summary, filters: dict[str, str]) -> TimelineView | None:
    histogram = summary.histogram()
    buckets = histogram["buckets"]
    window = summary.window
    if not buckets or window is None:
        return None
    unit = histogram["bucket"]
    step = UNITS[unit]
    peak = max(b["count"] for b in buckets) or 1
    slot = WIDTH / len(buckets)
    gap = min(2.0, slot * 0.15)
    bars = []
    for i, b in enumerate(buckets):
        start = datetime.fromisoformat(b["start"].replace("Z", "+00:00"))
        since, until = max(start, window.since), min(start + step, window.until)
        y = float(HEIGHT)
        segments = []
        for t in ACTOR_TYPES:
            n = b["by_actor_type"][t]
            if n:
                h = HEIGHT * n / peak
                y -= h
                segments.append(Segment(t, round(y, 2), round(h, 2)))
        parts = ", ".join(
            f"{ACTOR_LABELS[t]} {b['by_actor_type'][t]}" for t in ACTOR_TYPES if b["by_actor_type"][t]
        )
        label = f"{_when(start, unit)}: {b['count']:,} {'entry' if b['count'] == 1 else 'entries'}"
        bars.append(
            Bar(
                start=b["start"],
                end=iso_z(start + step),
                x=round(i * slot + gap / 2, 2),
                width=round(max(slot - gap, 0.5), 2),
                count=b["count"],
                segments=segments,
                label=label + (f" ({parts})" if parts else ""),
                href=_page_url(filters, since=iso_z(since), until=iso_z(until)),
            )
        )
    every = max(1, len(bars) // 6)
    bars = [
        replace(bar, tick=_when(datetime.fromisoformat(bar.start[:-1]), unit)[:-4]) if i % every == 0 else bar
        for i, bar in enumerate(bars)
    ]
    totals = {t: sum(b["by_actor_type"][t] for b in buckets) for t in ACTOR_TYPES}
    return TimelineView(unit, bars, peak, sum(totals.values()), totals, ACTOR_LABELS)


@dataclass(frozen=True)
class FacetValue:
    text: str
    detail: str
    count: int
    href: str
    current: bool
    share: float
    """The count as a percentage of the facet's largest, for the bar behind it."""


@dataclass(frozen=True)
class Facet:
    name: str
    title: str
    values: list[FacetValue]


def facets_view(summary: Summary, filters: dict[str, str]) -> list[Facet]:
    """Each facet's values, each linking to the page with exactly that filter set (the others kept)."""
    body: dict[str, Any] = summary.facets()

    def link(name: str, value: str) -> tuple[str, bool]:
        changes = {name: value}
        return _page_url({k: v for k, v in filters.items() if k != "cursor"}, **changes), filters.get(
            name
        ) == value

    def value(name: str, key: str, text: str, detail: str, count: int, largest: int) -> FacetValue:
        href, current = link(name, key)
        return FacetValue(text, detail, count, href, current, round(100 * count / (largest or 1), 1))

    out = []
    for name, title in (
        ("actor", "Top actors"),
        ("action", "Top actions"),
        ("resource_type", "Top resource types"),
    ):
        items = body[name]
        largest = items[0]["count"] if items else 1
        if name == "actor":
            values = [value(name, a["id"], a["name"] or a["id"], a["id"], a["count"], largest) for a in items]
        else:
            values = [
                value(
                    name,
                    v["value"],
                    v["value"].replace("_", " ") if name == "resource_type" else v["value"],
                    "",
                    v["count"],
                    largest,
                )
                for v in items
            ]
        out.append(Facet(name, title, values))
    return out
