"""Login for browsers: a token is exchanged once for an HttpOnly session cookie.

All three routes are open (see `daemon.api.auth.OPEN_ROUTES`): `me` tells the web UI whether
to show a login form, and logout only ever forgets the caller's own session.
"""

from __future__ import annotations

import asyncio
from typing import Literal

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
)

router = APIRouter(prefix="/api/auth", tags=["auth"])

# Slows a guesser down; the 16-character minimum is what makes guessing hopeless.
_FAILED_LOGIN_DELAY_S = 0.5


class LoginRequest(BaseModel):
    token: SecretStr


class LoginRead(BaseModel):
    role: Role


class MeRead(BaseModel):
    role: Literal["read", "control", "none"]
    auth_required: bool


@router.post("/login")
async def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    access: AccessDep,
    previous: CookieDep,
) -> LoginRead:
    """Sets the session cookie (HttpOnly, SameSite=Strict, 7 days); 401 on a wrong token.
    A session the browser held before is forgotten, whatever the outcome."""
    if not access.required:
        return LoginRead(role="control")
    if previous is not None:
        access.logout(previous)
    session = access.login(body.token.get_secret_value())
    if session is None:
        await asyncio.sleep(_FAILED_LOGIN_DELAY_S)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "wrong token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    session_id, role = session
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


@router.get("/me")
async def me(access: AccessDep, bearer: BearerDep, session_id: CookieDep) -> MeRead:
    """The caller's role ("none" without valid credentials) and whether the API asks for one."""
    role = caller_role(access, bearer.credentials if bearer else None, session_id)
    return MeRead(role=role or "none", auth_required=access.required)
