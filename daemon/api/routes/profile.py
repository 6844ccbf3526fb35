"""The equipment profile and the site, read and edited as a form."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/profile", tags=["profile"])
