"""The timeline and facet counts of the activity log, for the filters of ``GET /api/v1/activity``.

Served before the activity router, whose ``/{seq}`` would otherwise take these paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from activitylog.log.timeline import MAX_BUCKETS, summarize
from activitylog.web.api import ERROR_RESPONSES
from activitylog.web.api.activity import Filter
from activitylog.web.deps import Db, LogReader

router = APIRouter(prefix="/api/v1/activity", tags=["activity log"], responses=ERROR_RESPONSES)


class BucketOut(BaseModel):
    start: str = Field(description="the bucket's first instant, ISO 8601 UTC (`Z`)")
    count: int = Field(description="entries in the bucket that match the filters")
    by_actor_type: dict[str, int] = Field(description="the count per actor type (every type, zeros included)")


class HistogramOut(BaseModel):
    bucket: Literal["hour", "day", "week"]
    buckets: list[BucketOut] = Field(
        description="every bucket of the window, oldest first, empty ones included; UTC hours, days and "
        "ISO weeks (from Monday)"
    )


class ActorFacetOut(BaseModel):
    id: str
    name: str | None = Field(description="the actor as its latest entry names it")
    count: int


class ValueFacetOut(BaseModel):
    value: str
    count: int


class FacetsOut(BaseModel):
    actor: list[ActorFacetOut] = Field(description="the 10 actors with most matching entries, largest first")
    action: list[ValueFacetOut] = Field(
        description="the 10 actions with most matching entries, largest first"
    )
    resource_type: list[ValueFacetOut] = Field(description="the 10 resource types with most, largest first")


Bucket = Annotated[
    Literal["hour", "day", "week"] | None,
    Query(
        description=f"bucket width; default: hour for a window up to 3 days, day up to 183 days, else week. "
        f"A window of more than {MAX_BUCKETS} buckets is refused"
    ),
]


@router.get("/histogram", response_model=HistogramOut)
def histogram(caller: LogReader, db: Db, f: Filter, bucket: Bucket = None) -> dict[str, Any]:
    """Matching entries per bucket of the window, stacked by actor type. The window is `since`..`until`;
    without `since` it starts at the account's first entry, without `until` it ends now. Counts are exact."""
    return summarize(db, caller.account_id, f, bucket, datetime.now(UTC)).histogram()


@router.get("/facets", response_model=FacetsOut)
def facets(caller: LogReader, db: Db, f: Filter) -> dict[str, Any]:
    """The top actors, actions and resource types of the matching entries, with exact counts; equal counts
    in the order of their id or value."""
    return summarize(db, caller.account_id, f, None, datetime.now(UTC)).facets()
