"""The REST API, one router per resource."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size, 1-1000")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]
