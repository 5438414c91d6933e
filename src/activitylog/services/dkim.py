"""DKIM private keys: parsed and checked when they are set, and the public half a domain's DNS must publish.

A key is stored only if it is one a DKIM signer can use — an unencrypted RSA key of at least 1024 bits
(RFC 8301) or an Ed25519 key (RFC 8463) — and it is stored in one canonical form (PKCS#8 PEM), so the same
key pasted twice, or pasted through a field that joined its lines, is the same value.
"""

from __future__ import annotations

import base64
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from activitylog.errors import InvalidInput

FIELD = "dkim_private_key"
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept shorter keys
_ARMOR = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def _rewrapped(text: str) -> bytes:
    """The PEM block with its base64 in 64-character lines: a key pasted into a one-line field arrives with
    its line breaks turned into spaces (or removed), which no PEM parser reads."""
    match = _ARMOR.search(text)
    if match is None:
        raise InvalidInput(FIELD, "not a PEM private key (-----BEGIN PRIVATE KEY----- ... -----END ...-----)")
    label, body = match.group(1), "".join(match.group(2).split())
    if ":" in body:  # an old OpenSSL encrypted key carries headers (Proc-Type: 4,ENCRYPTED)
        raise InvalidInput(FIELD, "the key is encrypted; export it without a passphrase")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----", ""]).encode()


def load_private_key(text: str) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(_rewrapped(text), password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise InvalidInput(FIELD, "the key is encrypted; export it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput(FIELD, "not a readable PEM private key (damaged, or not a key)") from None


def canonical_private_key(text: str) -> str:
    """The key as PKCS#8 PEM, or InvalidInput naming the field and saying what is wrong with it."""
    key = load_private_key(text)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(
                FIELD, f"an RSA key of {key.key_size} bits; DKIM needs at least {MIN_RSA_BITS}"
            )
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InvalidInput(FIELD, "DKIM signs with RSA or Ed25519 keys only")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def public_record(private_pem: str) -> tuple[str, str]:
    """``(k, p)`` of the DKIM record that publishes this key's public half (RFC 6376 §3.6.1, RFC 8463):
    RSA as base64 of its SubjectPublicKeyInfo, Ed25519 as base64 of its 32 raw bytes."""
    key = load_private_key(private_pem)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode()
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "rsa", base64.b64encode(der).decode()
