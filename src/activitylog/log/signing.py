"""Ed25519 keys for signed checkpoints. The private key lives outside the database: in
``ACTIVITYLOG_SIGNING_KEY`` (base64 of the 32-byte seed) or in a key file, created on first use in the
service's key directory (``ACTIVITYLOG_KEY_DIR``, not beside the database: whoever can copy the database file
should not get the key with it). Trust is pinned outside the database too: the signer's own public half, the
keys it rotated away from (kept beside it), and ``ACTIVITYLOG_VERIFIER_KEYS``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from activitylog.config import Settings, key_file_path


class SigningKeyError(RuntimeError):
    """The configured signing key cannot be used."""


@dataclass(frozen=True)
class Signer:
    private_key: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    @property
    def key_id(self) -> str:
        return "sk_" + hashlib.sha256(self.public_raw).hexdigest()[:16]

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.private_key.sign(payload)).decode()


def public_pem(public_b64: str) -> str:
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_bytes(text: str, where: str, *, kind: str, error: type[Exception]) -> bytes:
    """A 32-byte key from its base64 text (a setting or a key file); the error names where it came from."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise error(f"{where}: not base64") from None
    if len(key) != 32:
        raise error(f"{where}: {kind} is 32 bytes, got {len(key)}")
    return key


def _seed_bytes(text: str, where: str) -> bytes:
    return key_bytes(text, where, kind="an Ed25519 key", error=SigningKeyError)


def key_file(settings: Settings) -> Path:
    """As configured; else an existing key beside the SQLite file (where earlier versions put it); else
    ``signing.key`` in the key directory."""
    if settings.signing_key_file:
        return Path(settings.signing_key_file)
    legacy = key_file_path(settings, "", ".signing-key", "activitylog-signing.key")
    return legacy if legacy.exists() else settings.key_directory / "signing.key"


def pinned_public_keys(settings: Settings, signer: Signer) -> list[bytes]:
    """Every public key a checkpoint of this service may be signed with, none of them from the database:
    the signing key's own, each retired key file beside it, and ``ACTIVITYLOG_VERIFIER_KEYS``."""
    keys = [signer.public_raw]
    path = key_file(settings)
    for retired in sorted(path.parent.glob(f"{path.name}.retired-*")) if not settings.signing_key else []:
        keys.append(
            Signer(
                Ed25519PrivateKey.from_private_bytes(_seed_bytes(retired.read_text(), str(retired)))
            ).public_raw
        )
    for i, text in enumerate(t for t in settings.verifier_keys.split(",") if t.strip()):
        keys.append(
            key_bytes(
                text, f"ACTIVITYLOG_VERIFIER_KEYS[{i}]", kind="an Ed25519 public key", error=SigningKeyError
            )
        )
    return keys


def new_seed_file(path: Path) -> None:
    """Write a fresh private key readable by the owner only."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(base64.b64encode(seed).decode() + "\n")
    os.replace(tmp, path)


def load_signer(settings: Settings) -> Signer:
    if settings.signing_key:
        seed = _seed_bytes(settings.signing_key, "ACTIVITYLOG_SIGNING_KEY")
    else:
        path = key_file(settings)
        if not path.exists():
            new_seed_file(path)
        seed = _seed_bytes(path.read_text(), str(path))
    return Signer(Ed25519PrivateKey.from_private_bytes(seed))


def rotate_key_file(settings: Settings) -> Path:
    """Keep the old key beside the new one (``.retired-<key id>``) and start signing with a new key."""
    if settings.signing_key:
        raise SigningKeyError("the key comes from ACTIVITYLOG_SIGNING_KEY: set a new value there instead")
    path = key_file(settings)
    if path.exists():
        old = load_signer(settings)
        os.replace(path, path.with_name(f"{path.name}.retired-{old.key_id}"))
    new_seed_file(path)
    return path
