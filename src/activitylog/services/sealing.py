"""Secrets the service must keep but never show — a sending domain's DKIM private key — sealed at rest.

AES-256-GCM under a data key that lives outside the database (``ACTIVITYLOG_DATA_KEY``, or a key file
created on first use, like the checkpoint signing key), so a database dump or backup holds only
ciphertext. The field's name is bound in as associated data: a sealed value moved to another field does
not open.
"""

from __future__ import annotations

import base64
import os
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from activitylog.config import Settings, key_file_path
from activitylog.log.signing import key_bytes, new_seed_file

PREFIX = "sealed:v1:"
NONCE_BYTES = 12


class SealingError(Exception):
    """A data key that cannot be used, or a sealed value it cannot open."""


def data_key_file(settings: Settings) -> Path:
    return key_file_path(settings, settings.data_key_file, ".data-key", "activitylog-data.key")


@lru_cache(maxsize=8)
def _key(data_key: str, path: str) -> bytes:
    where = "ACTIVITYLOG_DATA_KEY" if data_key else path
    if not data_key:
        file = Path(path)
        if not file.exists():
            new_seed_file(file)  # 32 random bytes, base64, owner-only
        data_key = file.read_text()
    return key_bytes(data_key, where, kind="a data key", error=SealingError)


def _aead(settings: Settings | None) -> AESGCM:
    settings = settings or Settings()
    return AESGCM(_key(settings.data_key, str(data_key_file(settings))))


def seal(value: str, field: str, settings: Settings | None = None) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = _aead(settings).encrypt(nonce, value.encode(), field.encode())
    return PREFIX + base64.b64encode(nonce + sealed).decode()


def unseal(value: str, field: str, settings: Settings | None = None) -> str:
    """The plain value; one stored before sealing existed is returned as it is."""
    if not value.startswith(PREFIX):
        return value
    raw = base64.b64decode(value[len(PREFIX) :])
    try:
        return _aead(settings).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], field.encode()).decode()
    except InvalidTag:
        raise SealingError(f"{field}: sealed under another data key, or altered") from None
