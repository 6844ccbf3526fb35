"""The capture path as a sequence run uses it (`daemon.runs.CaptureSink`): a non-ASCII target
name is recorded and re-registered whole, a refused row fails the instruction like a failed
exposure."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from daemon.db.models import Frame, Target
from daemon.frame_records import register_unrecorded_files
from daemon.store import FrameStore
from drivers.equipment import Equipment
from processing.io import read_fits
from sequences.model import Status
from tests.daemon.test_capture_store_faults import full_disk_on_insert
from tests.sequences.conftest import M31_TARGET, NIGHT_START, Harness, open_harness

LIGHTS = "targets[0].items[0]"


def lights(target_name: str, count: int) -> dict[str, Any]:
    return {
        "name": f"{count} lights of {target_name}",
        "targets": [
            {
                **M31_TARGET,
                "target_name": target_name,
                "items": [{"kind": "take_exposures", "count": count, "exposure_s": 0.3}],
            }
        ],
    }


def frame_files(folder: Path) -> set[str]:
    root = folder / "frames"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def recorded_paths(h: Harness) -> set[str]:
    with Session(h.engine) as db:
        return set(db.scalars(select(Frame.path)))


async def test_a_run_records_and_re_registers_a_non_ascii_target_name(
    tmp_path: Path, equipment: Equipment, simulator_url: str, catalog_cache: Path
) -> None:
    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, NIGHT_START) as h:
        run_id, _ = await h.run(lights("Ω Cen", 2))
        assert h.state(run_id).nodes[LIGHTS].status is Status.SUCCEEDED
        frames = h.frames(run_id)
        assert len(frames) == 2
        with Session(h.engine) as db:
            names = {db.scalar(select(Target.name).where(Target.id == f.target_id)) for f in frames}
        assert names == {"Ω Cen"}
        _, header = read_fits(tmp_path / "frames" / frames[0].path)
        assert header["OBJECT"] == "Omega Cen"

        lost = frames[1]
        with Session(h.engine) as db, db.begin():
            db.execute(delete(Frame).where(Frame.id == lost.id))
        register_unrecorded_files(h.engine, FrameStore(tmp_path / "frames"), "simulators", UTC)
        again = h.frames(run_id)[-1]
        assert again.path == lost.path
        assert (again.run_id, again.node_path, again.target_id) == (run_id, LIGHTS, lost.target_id)
        assert again.background_adu == lost.background_adu
        assert again.star_count == lost.star_count


async def test_a_refused_row_fails_the_instruction_like_a_failed_exposure(
    tmp_path: Path, equipment: Equipment, simulator_url: str, catalog_cache: Path
) -> None:
    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, NIGHT_START) as h:
        with full_disk_on_insert(h.engine, "frame", after=1):
            run_id, _ = await h.run(lights("M31", 3))
        node = h.state(run_id).nodes[LIGHTS]
        assert node.status is Status.FAILED
        assert node.error is not None
        assert "database or disk is full" in node.error
        assert node.counters["done"] == 1
        assert frame_files(tmp_path) == recorded_paths(h)
        assert len(h.frames(run_id)) == 1
