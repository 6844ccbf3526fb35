"""Login for browsers: a token is exchanged once for an HttpOnly session cookie.

All three routes are open (see `daemon.api.auth.OPEN_ROUTES`): `me` tells the web UI whether
to show a login form, and logout only ever forgets the caller's own session.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, SecretStr

from daemon.access import SESSION_LIFETIME_S, Role
from daemon.api.auth import (
    COOKIE_PATH,
    SESSION_COOKIE,
    AccessDep,
    BearerDep,
    CookieDep,
    caller_role,
    session_cookie_secure,
    token_role,
)

router = APIRouter(prefix="/api/auth", tags=["auth"])

_LOCKED_OUT: dict[int | str, dict[str, Any]] = {
    429: {"description": "too many wrong tokens from this address; wait Retry-After seconds"}
}


class LoginRequest(BaseModel):
    token: SecretStr


class LoginRead(BaseModel):
    role: Role


class MeRead(BaseModel):
    role: Literal["read", "control", "none"]
    auth_required: bool


@router.post("/login", responses={401: {"description": "wrong token"}, **_LOCKED_OUT})
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    access: AccessDep,
    previous: CookieDep,
) -> LoginRead:
    """Sets the session cookie (HttpOnly, SameSite=Strict, 7 days); 401 on a wrong token,
    429 while this address is locked out for too many of them. A session the browser held
    before is forgotten, whatever the outcome."""
    if not access.required:
        return LoginRead(role="control")
    if previous is not None:
        access.logout(previous)
    role = await token_role(request, access, body.token.get_secret_value())
    if role is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session_id = access.start_session(role)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(SESSION_LIFETIME_S),
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=session_cookie_secure(request),
    )
    return LoginRead(role=role)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(response: Response, access: AccessDep, session_id: CookieDep) -> None:
    """Forgets the caller's session, so the cookie stops working even if it was copied."""
    if session_id is not None:
        access.logout(session_id)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")


@router.get("/me", responses=_LOCKED_OUT)
async def me(
    request: Request, access: AccessDep, bearer: BearerDep, session_id: CookieDep
) -> MeRead:
    """The caller's role ("none" without valid credentials) and whether the API asks for one.
    A bearer token sent here counts like anywhere else: this is no place to test guesses."""
    role = await caller_role(request, access, bearer.credentials if bearer else None, session_id)
    return MeRead(role=role or "none", auth_required=access.required)
