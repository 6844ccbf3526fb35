"""The web UI: one page and its static files, served from the installed package (no build
step, nothing fetched from the internet)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(tags=["web"])


def web_root() -> Path:
    """`daemon/web` of the installed package (package data)."""
    return Path(str(files("daemon").joinpath("web")))


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single page; its hash routes (#/templates, #/nights, ...) are handled in the browser."""
    return FileResponse(web_root() / "index.html", headers={"Cache-Control": "no-cache"})


def install_web(app: FastAPI) -> None:
    """The page at `/` and its scripts and styles under `/static/`."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=web_root()), name="static")
