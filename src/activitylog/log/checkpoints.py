"""Signed checkpoints of each account's chain head, and signed manifests of exports.

A checkpoint says "account A's log had seq N with hash H at time T", signed with Ed25519 and linked to the
previous checkpoint's signature. Whoever holds one can later prove that nothing up to seq N was removed or
rewritten, even by someone with full write access to the database: rewriting would change H, and forging a
new signature needs the private key, which never enters the database.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from activitylog.db.base import Database
from activitylog.db.models import ChainHead, Checkpoint, SigningKey
from activitylog.log.chain import canonical_json, format_instant
from activitylog.log.signing import Signer

SIGNED_FIELDS = ("account_id", "seq", "hash", "time", "previous_signature", "key_id")


def checkpoint_payload(fields: dict[str, Any]) -> bytes:
    return canonical_json({name: fields[name] for name in SIGNED_FIELDS}).encode("utf-8")


def checkpoint_to_api(row: Checkpoint) -> dict[str, Any]:
    return {
        "account_id": row.account_id,
        "seq": row.seq,
        "hash": row.hash,
        "time": row.signed_at,
        "previous_signature": row.previous_signature,
        "key_id": row.key_id,
        "signature": row.signature,
    }


def register_key(session: Session, signer: Signer) -> None:
    """Publish the signer's public key (idempotent), so every checkpoint it signs can be checked."""
    if session.get(SigningKey, signer.key_id) is None:
        now = datetime.now(UTC)
        for older in session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None))):
            older.retired_at = now
        session.add(SigningKey(id=signer.key_id, public_key=signer.public_b64, created_at=now))
        session.flush()


def latest(session: Session, account_id: str) -> Checkpoint | None:
    return session.execute(
        select(Checkpoint).where(Checkpoint.account_id == account_id).order_by(Checkpoint.seq.desc()).limit(1)
    ).scalar_one_or_none()


def checkpoint_account(db: Database, account_id: str, signer: Signer) -> Checkpoint | None:
    """Sign the current head, unless the latest checkpoint already covers it. None for an empty log.

    The head row is locked while signing so checkpoints of one account form a single line, never a fork.
    """
    with db.for_account(account_id).writer() as session:
        head = session.execute(
            select(ChainHead).where(ChainHead.account_id == account_id).with_for_update()
        ).scalar_one_or_none()
        if head is None or head.seq == 0:
            return None
        previous = latest(session, account_id)
        if previous is not None and previous.seq == head.seq:
            return previous
        register_key(session, signer)
        fields = {
            "account_id": account_id,
            "seq": head.seq,
            "hash": head.hash,
            "time": format_instant(datetime.now(UTC)),
            "previous_signature": previous.signature if previous else None,
            "key_id": signer.key_id,
        }
        row = Checkpoint(
            account_id=account_id,
            seq=head.seq,
            hash=head.hash,
            signed_at=fields["time"],
            key_id=signer.key_id,
            previous_signature=fields["previous_signature"],
            signature=signer.sign(checkpoint_payload(fields)),
        )
        session.add(row)
        session.commit()
        return row


def checkpoint_all(db: Database, signer: Signer) -> int:
    """Checkpoint every account whose log moved since its last checkpoint; returns how many were signed."""
    with db.system().reader() as session:  # which accounts moved: a cross-account read
        heads = session.execute(select(ChainHead.account_id, ChainHead.seq)).all()
        signed = {
            a: s
            for a, s in session.execute(
                select(Checkpoint.account_id, Checkpoint.seq).order_by(Checkpoint.account_id, Checkpoint.seq)
            )
        }
    moved = [account for account, seq in heads if seq and signed.get(account) != seq]
    for account_id in moved:
        checkpoint_account(db, account_id, signer)
    return len(moved)


def public_keys(session: Session) -> dict[str, Ed25519PublicKey]:
    return {
        key.id: Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
        for key in session.scalars(select(SigningKey))
    }


def signature_ok(fields: dict[str, Any], keys: dict[str, Ed25519PublicKey]) -> bool:
    key = keys.get(fields["key_id"])
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(fields["signature"]), checkpoint_payload(fields))
    except (InvalidSignature, ValueError):
        return False
    return True


def slice_digest(rows: Iterable[tuple[int, str]]) -> str:
    """One hash over the (seq, hash) list of a slice: a manifest's proof that no row was added or removed."""
    digest = hashlib.sha256()
    for seq, entry_hash in rows:
        digest.update(f"{seq}:{entry_hash}\n".encode())
    return digest.hexdigest()


MANIFEST_FIELDS = (
    "account_id", "filter", "format", "as_of_seq", "rows", "first_seq", "last_seq", "slice_digest",
    "checkpoint", "key_id",
)  # fmt: skip


def sign_manifest(manifest: dict[str, Any], signer: Signer) -> dict[str, Any]:
    body = {**{name: manifest[name] for name in MANIFEST_FIELDS if name != "key_id"}, "key_id": signer.key_id}
    return {**body, "signature": signer.sign(canonical_json(body).encode("utf-8"))}
