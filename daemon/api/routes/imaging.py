"""Imaging by hand: looped exposures, flats wizard, centering on a point of a frame."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/imaging", tags=["imaging"])
