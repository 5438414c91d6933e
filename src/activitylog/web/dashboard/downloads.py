"""The auditor's downloads from the activity page: exactly the applied filter, all as of one signed tree.

The page pins the log's size when it renders (``as_of``, shown with its signed checkpoint in the "Prove this
slice" panel); every download link carries it, so the CSV, its manifest, the proof file and the JSON Lines
are taken against that same tree and agree with each other and with the panel, however much the log has
grown between two clicks. The exports themselves are logged (``activity_log.export`` with the filter and
``as_of_seq``); the manifest and the proof file hold hashes and seqs only, as their API endpoints do.
Session auth, like the rest of the dashboard: the links work from the page without an API key.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from activitylog.errors import DomainError, InvalidInput
from activitylog.log.export import filename, manifest, stream, stream_proofs
from activitylog.log.query import MAX_SEQ, ActivityFilter, parse_filter
from activitylog.log.tree_store import TreeReader
from activitylog.services.exports import log_export
from activitylog.web.dashboard.activity import EXPORT_PARAMS, PAGE_EXTRAS, given_filter
from activitylog.web.dashboard.render import PageRoute, Viewer, ViewerDep
from activitylog.web.deps import get_db, get_signer
from activitylog.web.params import check_query

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PREFIX = "/activity/download"
# What the page offers, by the name each link ends in: (format, what the file is).
FILES = {
    "csv": ("csv", "export"),
    "csv.manifest.json": ("csv", "manifest"),
    "proof.jsonl": ("csv", "proof"),
    "jsonl": ("jsonl", "export"),
    "jsonl.manifest.json": ("jsonl", "manifest"),
}
AsOf = Annotated[
    int, Query(ge=1, le=MAX_SEQ, description="the tree size the page's downloads are taken as of")
]


@dataclass(frozen=True)
class Proofs:
    """The "Prove this slice" panel: the tree the downloads are taken as of, and how to check them."""

    tree_size: int
    checkpoint: str | None
    refused: str | None  # why the signer would not sign (a rewritten history), instead of a checkpoint
    verifier_key: str
    links: dict[str, str]
    names: dict[str, str]
    command: str


def base_name(account_id: str, f: ActivityFilter, as_of: int) -> str:
    """``activity-<account>-<since>-<until>-<as_of>``: the export's own name, plus the tree it is as of."""
    return filename(account_id, f, "csv").removesuffix(".csv") + f"-{as_of}"


def panel(request: Request, viewer: Viewer, params: dict[str, str], f: ActivityFilter) -> Proofs | None:
    """The downloads for this filter as of the log's size now (None while the log is empty)."""
    db = get_db(request)
    with db.read_connection() as conn:
        size = TreeReader(conn, viewer.account_id).head().size
    if size < 1:
        return None
    signer = get_signer(request)
    note, refused = None, None
    try:
        note = signer.sign(db, viewer.account_id, size)
    except DomainError as exc:
        refused = exc.message
    query = urlencode({**params, "as_of": size})
    links = {suffix: f"{PREFIX}.{suffix}?{query}" for suffix in FILES}
    base = base_name(viewer.account_id, f, size)
    names = {suffix: _file_name(base, suffix) for suffix in FILES}
    key = signer.verifier_key(viewer.account_id)
    command = " ".join(
        [
            "python3 tools/verify_export.py",
            shlex.quote(names["csv"]),
            "--proof",
            shlex.quote(names["proof.jsonl"]),
            "--manifest",
            shlex.quote(names["csv.manifest.json"]),
            "--verifier-key",
            shlex.quote(key),
        ]
    )
    return Proofs(size, note, refused, key, links, names, command)


def _file_name(base: str, suffix: str) -> str:
    # The proof file is named after the CSV, as ``activitylog log --proofs`` names it (F.proof.jsonl).
    return f"{base}.csv.proof.jsonl" if suffix == "proof.jsonl" else f"{base}.{suffix}"


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}


def _download(request: Request, viewer: Viewer, suffix: str, as_of: int) -> Response:
    viewer.require("activity:read")
    check_query(request, (*EXPORT_PARAMS, "as_of"), empty_ok=EXPORT_PARAMS)
    params = given_filter(request)
    f = parse_filter(**params)
    db = get_db(request)
    with db.read_connection() as conn:
        head = TreeReader(conn, viewer.account_id).head().size
    if as_of > head:
        raise InvalidInput("as_of", f"{as_of} is beyond the log's size ({head})")
    fmt, kind = FILES[suffix]
    name = _file_name(base_name(viewer.account_id, f, as_of), suffix)
    if kind == "manifest":
        body = manifest(db, get_signer(request), viewer.account_id, f, fmt, as_of)
        text = json.dumps(body, ensure_ascii=False, indent=2) + "\n"
        return Response(text, media_type="application/json", headers=_attachment(name))
    if kind == "proof":
        chunks = stream_proofs(db, get_signer(request), viewer.account_id, f, as_of)
        first = next(chunks)  # signs now: a refused history is an error page, not a broken download
        return StreamingResponse(
            _prepend(first, chunks), media_type="application/x-ndjson", headers=_attachment(name)
        )
    log_export(viewer.uow(request), f, fmt, as_of=as_of)
    media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
    return StreamingResponse(
        stream(db, viewer.account_id, f, fmt, as_of), media_type=media, headers=_attachment(name)
    )


def _prepend(first: bytes, rest: Any) -> Any:
    yield first
    yield from rest


def _route(suffix: str) -> None:
    def download(request: Request, viewer: ViewerDep, as_of: AsOf) -> Response:
        return _download(request, viewer, suffix, as_of)

    download.__name__ = "download_" + suffix.replace(".", "_")
    router.add_api_route(f"{PREFIX}.{suffix}", download, methods=["GET"])


for _suffix in FILES:
    _route(_suffix)


def page_context(
    request: Request, viewer: Viewer, params: dict[str, str] | None, f: ActivityFilter | None
) -> dict[str, Any]:
    shown = params is not None and f is not None and viewer.can("activity:read")
    return {"proofs": panel(request, viewer, params or {}, f) if shown and f is not None else None}


PAGE_EXTRAS.append(page_context)
