"""Live stacks: the night's running stacks and their auto-stretched previews."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse

from daemon.api.deps import RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import RecordId
from daemon.api.schemas.live import LiveStackRead
from daemon.errors import NotFound

router = APIRouter(prefix="/api/live", tags=["live"])

StackName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_-]{1,200}$", description="the stack's name (`/api/live`)")
]


@router.get("")
async def list_live_stacks(runtime: RuntimeDep) -> list[LiveStackRead]:
    """Every live stack, newest night first (empty when live stacking is off)."""
    if runtime.live is None:
        return []
    found = await asyncio.to_thread(runtime.live.stacks)
    return [
        LiveStackRead(
            session_id=int(s["session_id"]),
            name=s["name"],
            target=s["target"],
            filter_name=s.get("filter"),
            frames=int(s.get("frames", 0)),
            rejected_fraction=float(s.get("rejected_fraction", 0.0)),
            skipped=len(s.get("skipped", {})),
            reference_frame_id=s.get("reference_frame_id"),
            notes=list(s.get("notes", [])),
            updated=datetime.fromisoformat(s["updated"]) if "updated" in s else None,
            preview_url=f"/api/live/{s['session_id']}/{s['name']}.jpg",
        )
        for s in found
    ]


@router.get("/{session_id}/{name}.jpg", response_class=FileResponse, responses=responses(404))
async def live_preview(session_id: RecordId, name: StackName, runtime: RuntimeDep) -> FileResponse:
    """The live stack's mean so far, auto-stretched (linked STF), as JPEG."""
    path = None if runtime.live is None else runtime.live.preview(session_id, name)
    if path is None:
        raise NotFound(f"no live stack {name!r} of night {session_id} (yet)")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
