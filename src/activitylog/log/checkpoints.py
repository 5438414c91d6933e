"""Signing checkpoints of an account's tree, by a signer that remembers what it signed.

A checkpoint (a C2SP signed note over the tree's size and root, ``log.notes``) is a promise: every later tree
of that account extends it. The database cannot keep that promise on its own — whoever can write the
database can rebuild a whole forged log — so the signer keeps the last checkpoint it signed per origin
*outside* the database, beside its key (``<key file>.signed/``), and refuses to sign for a database whose
tree no longer extends it (rolled back, truncated, rewritten): :class:`HistoryRejected`. After a restore
from backup an operator accepts the database's history on purpose with
``activitylog checkpoint --accept-history``, which is logged.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from activitylog.config import Settings
from activitylog.db.base import Database
from activitylog.db.models import ChainHead
from activitylog.errors import Conflict, InvalidInput
from activitylog.log import notes
from activitylog.log.signing import Signer, key_file, pinned_public_keys
from activitylog.log.tree_store import TreeReader
from activitylog.log.verify_export import BadCheckpoint, Checkpoint, VerifierKey, note_key_id, open_checkpoint

log = logging.getLogger("activitylog.checkpoints")


class HistoryRejected(Conflict):
    """The database's tree does not extend what the signer already signed for this account."""

    code = "history_rejected"


def memory_dir(settings: Settings) -> Path:
    path = key_file(settings)
    return path.with_name(path.name + ".signed")


@dataclass(frozen=True)
class SignerMemory:
    """The last checkpoint signed per origin, one file each, read back only if signed by a pinned key."""

    directory: Path
    keys: list[bytes]

    def _path(self, origin: str) -> Path:
        return self.directory / (hashlib.sha256(origin.encode()).hexdigest()[:32] + ".note")

    def last(self, origin: str) -> Checkpoint | None:
        path = self._path(origin)
        if not path.exists():
            return None
        text = path.read_text(encoding="utf-8")
        for key in self.keys:
            try:
                return open_checkpoint(text, VerifierKey(origin, note_key_id(origin, key), key))
            except BadCheckpoint:
                continue
        raise HistoryRejected(f"{path}: the signer's memory is not signed by a pinned key; it was altered")

    @contextmanager
    def locked(self, origin: str) -> Iterator[None]:
        """One signer at a time per origin, across processes (``serve`` and ``worker`` may both sign)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self._path(origin).with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def remember(self, origin: str, note: str) -> None:
        path = self._path(origin)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(note)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


class CheckpointSigner:
    """Signs an account's tree after checking that it extends the last one signed."""

    def __init__(self, settings: Settings, signer: Signer) -> None:
        self.settings, self.signer = settings, signer
        self.memory = SignerMemory(memory_dir(settings), pinned_public_keys(settings, signer))

    def verifier_key(self, account_id: str) -> str:
        name = notes.origin(self.settings, account_id)
        return notes.verifier_key(name, self.signer.public_raw)

    def last_signed(self, account_id: str) -> Checkpoint | None:
        return self.memory.last(notes.origin(self.settings, account_id))

    def sign(self, db: Database, account_id: str, size: int | None = None) -> str:
        """The signed note for the tree of ``size`` (default: the head). Raises InvalidInput for a size
        the log does not have, HistoryRejected when the tree does not extend the signer's memory."""
        name = notes.origin(self.settings, account_id)
        with self.memory.locked(name), db.for_account(account_id).reader() as session:
            reader = TreeReader(session.connection(), account_id)
            head = reader.head()
            size = head.size if size is None else size
            if size < 1 or size > head.size:
                raise InvalidInput("tree_size", f"must be 1..{head.size} (the log's size), got {size}")
            last = self.memory.last(name)
            if last is not None:
                self._check_extends(reader, head.size, last)
            root = head.root if size == head.size else reader.root(size)
            note = notes.sign(notes.checkpoint_body(name, size, root), name, self.signer)
            if last is None or size > last.size:
                self.memory.remember(name, note)
            return note

    def _check_extends(self, reader: TreeReader, head_size: int, last: Checkpoint) -> None:
        if head_size < last.size:
            raise self._refuse(last, f"the log has {head_size} entries, but the signer signed {last.size}")
        if reader.root(last.size) != last.root:
            raise self._refuse(
                last, f"the log's first {last.size} entries are not the ones the signer signed"
            )

    def _refuse(self, last: Checkpoint, why: str) -> HistoryRejected:
        message = (
            f"{last.origin}: refusing to sign: {why} (rolled back, truncated or rewritten). If this database "
            "was restored on purpose, run 'activitylog checkpoint --accept-history ACCOUNT'"
        )
        log.error(message)
        return HistoryRejected(message)

    def accept_history(self, db: Database, account_id: str) -> tuple[Checkpoint | None, str]:
        """Forget what was signed for this account and sign the database's tree as it is now (the caller
        logs it first). Returns the forgotten checkpoint and the new note."""
        name = notes.origin(self.settings, account_id)
        with self.memory.locked(name), db.for_account(account_id).reader() as session:
            try:
                previous = self.memory.last(name)
            except HistoryRejected:
                previous = None
            head = TreeReader(session.connection(), account_id).head()
            note = notes.sign(notes.checkpoint_body(name, head.size, head.root), name, self.signer)
            self.memory.remember(name, note)
            return previous, note


def checkpoint_all(
    db: Database, signer: CheckpointSigner, on_rejected: Callable[[str, HistoryRejected], None] | None = None
) -> int:
    """Sign the head of every account whose log moved past what the signer remembers; returns how many.
    A refused account is logged, handed to ``on_rejected`` (the worker raises ``integrity.failure``) and
    skipped, so one rewritten log never stops the others' checkpoints."""
    with db.system().reader() as session:  # which accounts moved: a cross-account read
        heads = session.execute(select(ChainHead.account_id, ChainHead.seq).where(ChainHead.seq > 0)).all()
    signed = 0
    for account_id, seq in heads:
        try:
            last = signer.last_signed(account_id)
            if last is None or last.size != seq:
                signer.sign(db, account_id)
                signed += 1
        except HistoryRejected as refused:
            if on_rejected is not None:
                on_rejected(account_id, refused)
            continue
    return signed
