"""Targets: find an object by name or coordinates, and its framing chart."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/targets", tags=["targets"])
