"""OCSF 1.x events from activity entries (filled in with the OCSF format)."""

from __future__ import annotations

from typing import Any


def to_ocsf(entry: dict[str, Any]) -> dict[str, Any]:
    raise NotImplementedError("OCSF")
