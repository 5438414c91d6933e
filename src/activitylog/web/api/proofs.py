"""The log's Merkle tree from outside: signed checkpoints, inclusion and consistency proofs, an export's proof
file, and the verifier key (API.md part 2, "Proofs"). Readable with the scope ``checkpoint:read``, which sees
hashes and sizes but no entry content."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from activitylog.errors import InvalidInput
from activitylog.log.export import stream_proofs
from activitylog.log.query import MAX_SEQ
from activitylog.log.tree_store import TreeReader
from activitylog.web.api import ERROR_RESPONSES
from activitylog.web.api.activity import Filter
from activitylog.web.deps import Db, LogReader, ProofReader, get_signer
from activitylog.web.schemas import ConsistencyOut, InclusionOut, VerifierKeyOut

router = APIRouter(tags=["proofs"], responses=ERROR_RESPONSES)
TREE = "/api/v1/activity/tree"
ACCOUNT_ID = re.compile(r"^acc_[0-9A-Za-z]{1,36}$")

Size = Annotated[int, Query(ge=1, le=MAX_SEQ, description="a tree size: the tree of seq 1..N")]


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _within_head(reader: TreeReader, **sizes: int) -> None:
    head = reader.head().size
    for name, size in sizes.items():
        if size > head:
            raise InvalidInput(name, f"{size} is beyond the log's size ({head})")


@router.get(f"{TREE}/checkpoint", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def checkpoint(
    caller: ProofReader,
    request: Request,
    db: Db,
    tree_size: Annotated[int | None, Query(ge=1, le=MAX_SEQ, description="default: the log's size")] = None,
) -> Response:
    """The C2SP signed note of the account's tree (the current size, or ``tree_size`` ≤ it)."""
    note = get_signer(request).sign(db, caller.account_id, tree_size)
    return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": "no-store"})


@router.get(f"{TREE}/inclusion", response_model=InclusionOut)
def inclusion(
    caller: ProofReader,
    db: Db,
    seq: Annotated[int, Query(ge=1, le=MAX_SEQ, description="the entry (leaf seq - 1)")],
    tree_size: Size,
) -> dict[str, Any]:
    """RFC 9162 audit path of entry ``seq`` in the tree of ``tree_size`` entries."""
    if seq > tree_size:
        raise InvalidInput("seq", f"{seq} is beyond tree_size {tree_size}")
    with db.read_connection() as conn:
        reader = TreeReader(conn, caller.account_id)
        _within_head(reader, tree_size=tree_size)
        leaf = reader.subtrees([(0, seq - 1)])[(0, seq - 1)]
        path = reader.inclusion(seq, tree_size)
    return {
        "leaf_index": seq - 1,
        "tree_size": tree_size,
        "leaf_hash": _b64(leaf),
        "hashes": [_b64(h) for h in path],
    }


@router.get(f"{TREE}/consistency", response_model=ConsistencyOut)
def consistency(
    caller: ProofReader,
    db: Db,
    old_size: Annotated[int, Query(ge=1, le=MAX_SEQ, description="the smaller tree's size")],
    tree_size: Size,
) -> dict[str, Any]:
    """RFC 9162 consistency proof: the tree of ``old_size`` is a prefix of the tree of ``tree_size``."""
    if old_size > tree_size:
        raise InvalidInput("old_size", f"{old_size} is beyond tree_size {tree_size}")
    with db.read_connection() as conn:
        reader = TreeReader(conn, caller.account_id)
        _within_head(reader, tree_size=tree_size)
        proof = reader.consistency(old_size, tree_size)
    return {"old_size": old_size, "tree_size": tree_size, "hashes": [_b64(h) for h in proof]}


@router.get(
    "/api/v1/activity/export/proof",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def export_proof(
    caller: LogReader,
    request: Request,
    db: Db,
    f: Filter,
    tree_size: Annotated[
        int | None,
        Query(ge=1, le=MAX_SEQ, description="the export's X-Activity-As-Of-Seq (default: the head)"),
    ] = None,
) -> StreamingResponse:
    """Each row of the filtered slice with its audit path in one signed tree: check every row of an export
    offline with ``tools/verify_export.py F --proof P --verifier-key K``."""
    with db.read_connection() as conn:
        head = TreeReader(conn, caller.account_id).head().size
    size = head if tree_size is None else tree_size
    if size < 1 or size > head:
        raise InvalidInput("tree_size", f"{size} is beyond the log's size ({head})")
    signer = get_signer(request)
    chunks = stream_proofs(db, signer, caller.account_id, f, size)
    first = next(chunks)  # signs now, so a refused history is an error answer, not a broken stream
    return StreamingResponse(
        _prepend(first, chunks),
        media_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="activity-{caller.account_id}-{size}.proof.jsonl"',
            "Cache-Control": "no-store",
        },
    )


def _prepend(first: bytes, rest: Any) -> Any:
    yield first
    yield from rest


@router.get("/api/v1/accounts/{account_id}/verifier-key", response_model=VerifierKeyOut)
def verifier_key(account_id: str, request: Request) -> dict[str, Any]:
    """The note verifier key of an account's checkpoints. No authentication: it is derived from the origin
    and the service's public key, so it says nothing about whether the account exists. Fetch it once and
    pin it; a key taken from the same place as the checkpoint it checks proves nothing."""
    if not ACCOUNT_ID.match(account_id):
        raise InvalidInput("account_id", "not an account id (acc_…)")
    signer = get_signer(request)
    key = signer.verifier_key(account_id)
    return {"origin": key.split("+", 1)[0], "verifier_key": key}
