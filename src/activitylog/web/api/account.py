"""The account itself and its users (managing users is for owners; a key never may)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from activitylog.db.models import Account, User
from activitylog.services import accounts, users
from activitylog.services.listing import one, page
from activitylog.web.api import ERROR_RESPONSES, Cursor, Limit
from activitylog.web.deps import AccountUow, Db, Reader, UsersUow
from activitylog.web.schemas import AccountOut, AccountPatch, Page, UserIn, UserOut, UserPatch

router = APIRouter(prefix="/api/v1", tags=["account"], responses=ERROR_RESPONSES)


@router.get("/account", response_model=AccountOut)
def get_account(caller: Reader, db: Db) -> Account:
    return accounts.get_account(db, caller.account_id)


@router.patch("/account", response_model=AccountOut)
def patch_account(body: AccountPatch, uow: AccountUow) -> Account:
    return accounts.update_account(uow, body.changes())


@router.get("/users", response_model=Page[UserOut])
def list_users(caller: Reader, db: Db, limit: Limit = 50, cursor: Cursor = None) -> dict[str, object]:
    rows, next_cursor = page(db, User, caller.account_id, limit=limit, cursor=cursor)
    return {"data": rows, "next_cursor": next_cursor}


@router.get("/users/{user_id}", response_model=UserOut)
def get_user(user_id: str, caller: Reader, db: Db) -> User:
    result: User = one(db, User, caller.account_id, user_id, "user")
    return result


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, uow: UsersUow) -> User:
    return users.create_user(uow, email=str(body.email), password=body.password, role=body.role)


@router.patch("/users/{user_id}", response_model=UserOut)
def patch_user(user_id: str, body: UserPatch, uow: UsersUow) -> User:
    return users.update_user(uow, user_id, body.changes())


@router.delete("/users/{user_id}", status_code=204)
def delete_user(user_id: str, uow: UsersUow) -> Response:
    users.delete_user(uow, user_id)
    return Response(status_code=204)
