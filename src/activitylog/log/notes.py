"""C2SP signed notes: the checkpoint text an account's tree is signed as, and the verifier key to check it.

Body ``<origin>\\n<tree size>\\n<base64 root>\\n`` (tlog-checkpoint v1), then a blank line and one signature
line ``— <key name> <base64(key id || Ed25519 signature)>`` (signed-note v1). The key name is the origin,
``<ACTIVITYLOG_LOG_ORIGIN>/<account_id>``, so one service key yields one verifier key per account, exactly
as Go's ``golang.org/x/mod/sumdb/note`` reads them. Checking a note is the auditor's code
(``log.verify_export.open_checkpoint``).
"""

from __future__ import annotations

import base64

from activitylog.config import Settings
from activitylog.log.signing import Signer
from activitylog.log.verify_export import NOTE_DASH, note_key_id

ALG_ED25519 = b"\x01"


def origin(settings: Settings, account_id: str) -> str:
    return f"{settings.log_origin}/{account_id}"


def verifier_key(name: str, public_key: bytes) -> str:
    """``<name>+<8 hex key id>+<base64(0x01 || public key)>``."""
    encoded = base64.b64encode(ALG_ED25519 + public_key).decode()
    return f"{name}+{note_key_id(name, public_key).hex()}+{encoded}"


def checkpoint_body(name: str, size: int, root: bytes) -> str:
    return f"{name}\n{size}\n{base64.b64encode(root).decode()}\n"


def sign(body: str, name: str, signer: Signer) -> str:
    signature = note_key_id(name, signer.public_raw) + signer.private_key.sign(body.encode("utf-8"))
    return f"{body}\n{NOTE_DASH}{name} {base64.b64encode(signature).decode()}\n"
