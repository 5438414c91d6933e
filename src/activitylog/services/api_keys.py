"""API keys: the secret is shown once at creation or rotation; only its SHA-256 is stored."""

from __future__ import annotations

from dataclasses import dataclass

from activitylog.db.models import ApiKey
from activitylog.errors import Conflict
from activitylog.ids import new_id
from activitylog.services import credentials
from activitylog.services.uow import UnitOfWork


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    secret: str


def create_api_key(uow: UnitOfWork, *, name: str, scopes: list[str]) -> IssuedKey:
    secret = credentials.new_api_key()
    with uow:
        key = ApiKey(
            id=new_id("key"),
            account_id=uow.account_id,
            name=name,
            scopes=sorted(set(scopes)),
            secret_hash=credentials.sha256_hex(secret),
            prefix=credentials.display_prefix(secret),
        )
        uow.add(key)
        uow.record("api_key.create", key)
        uow.commit()
    return IssuedKey(key=key, secret=secret)


def rotate_api_key(uow: UnitOfWork, key_id: str) -> IssuedKey:
    secret = credentials.new_api_key()
    with uow:
        key = uow.get(ApiKey, key_id, what="API key")
        if key.revoked_at is not None:
            raise Conflict("a revoked API key cannot be rotated")
        key.secret_hash = credentials.sha256_hex(secret)
        key.prefix = credentials.display_prefix(secret)
        uow.record("api_key.rotate", key)
        uow.commit()
    return IssuedKey(key=key, secret=secret)


def revoke_api_key(uow: UnitOfWork, key_id: str) -> ApiKey:
    with uow:
        key = uow.get(ApiKey, key_id, what="API key")
        if key.revoked_at is not None:
            raise Conflict("this API key is already revoked")
        key.revoked_at = uow.clock()
        uow.record("api_key.revoke", key)
        uow.commit()
    return key
