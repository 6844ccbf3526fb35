"""A one-shot-colour night in the frame database: its rows carry the sensor's Bayer pattern
(from the capture and from the header of a file found by the scan), so the night's job
debayers its lights as the live stack did and finds them in the live stack's cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC
from pathlib import Path

import pytest
import yaml
from astropy.io import fits
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Frame
from daemon.frame_records import register_unrecorded_files
from daemon.live import LiveService, night_cache
from daemon.naming import DEFAULT_PATTERN
from daemon.processing_options import ProcessingOptions, recipe_pipeline_config
from daemon.recipes import default_job_recipe
from daemon.simulator.rig import OBSERVATORY_CONFIG, SimulatorRig, simulator_profile
from daemon.store import FrameStore
from daemon.worker import session_frames
from drivers.alpaca import build_equipment
from drivers.equipment import Equipment
from processing import synthetic
from processing.debayer import BayerPattern
from processing.grouping import FrameKind, group_frames
from processing.pipeline import run_pipeline
from sequences.frames import ExposureSpec, FrameType
from tests.helpers import SMALL_SESSION

# Lights only: the live stack and the morning then calibrate alike (no master matches).
LIGHTS_ONLY = replace(SMALL_SESSION, bias_frames=0, dark_frames=0, flat_frames=0, light_frames=5)


def write_night(folder: Path, date_obs: str, bayer_pattern: str | None, lights: int = 5) -> None:
    """A synthetic night of lights as another program would leave them in the frames folder
    (the scan reads ``.fits`` files with a DATE-OBS, which the synthetic session lacks)."""

    def dated(_: synthetic.SyntheticFrame, path: Path) -> None:
        fits.setval(path, "DATE-OBS", value=date_obs)
        path.rename(path.with_suffix(".fits"))

    synthetic.write_session(
        folder,
        replace(LIGHTS_ONLY, light_frames=lights),
        bayer_pattern=bayer_pattern,
        on_frame=dated,
    )


def registered_nights(
    tmp_path: Path, colour_night: str = "2026-12-01T21:00:00"
) -> tuple[Engine, Path, int, int]:
    """A colour night and a mono night (2 December) registered by the start-up scan: the
    engine, the frames root and the two nights' ids. The earlier of the two is closed."""
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    store = FrameStore(tmp_path / "frames")
    write_night(store.root / "colour", colour_night, "RGGB")
    write_night(store.root / "mono", "2026-12-02T21:00:00", None, lights=2)
    result = register_unrecorded_files(engine, store, "simulators", UTC)
    assert len(result.unregistered) == 7
    with Session(engine) as db:
        nights = {
            path.split("/")[0]: session_id
            for path, session_id in db.execute(select(Frame.path, Frame.session_id))
        }
    return engine, store.root, nights["colour"], nights["mono"]


def test_scanned_files_keep_their_bayer_pattern_for_the_nights_job(tmp_path: Path) -> None:
    engine, root, colour, mono = registered_nights(tmp_path)
    colour_frames = session_frames(engine, root, colour)
    mono_frames = session_frames(engine, root, mono)
    assert [f.bayer_pattern for f in colour_frames] == [BayerPattern.RGGB] * 5
    assert [f.bayer_pattern for f in mono_frames] == [None, None]
    engine.dispose()


async def test_a_colour_nights_morning_job_reuses_the_live_stacks_cache(tmp_path: Path) -> None:
    engine, root, colour, _ = registered_nights(tmp_path, colour_night="2026-12-03T21:00:00")
    live_root = tmp_path / "live"
    live = LiveService(engine, root, tmp_path / "masters", live_root)
    await live.start()  # the colour night is the latest, still open: its lights are queued
    try:
        deadline = time.monotonic() + 60
        while True:
            folded = {
                s["session_id"]: s.get("frames") for s in await asyncio.to_thread(live.stacks)
            }
            if folded.get(colour) == 5:
                break
            assert time.monotonic() < deadline, f"live stacks not done: {folded}"
            await asyncio.sleep(0.2)
    finally:
        await live.stop()
    cache = night_cache(live_root, colour)
    assert len(list(cache.glob("*.json"))) == 5

    # The morning, as the worker plans the night's job: from the database rows alone.
    groups = group_frames(session_frames(engine, root, colour))
    config = replace(
        recipe_pipeline_config(ProcessingOptions(), default_job_recipe()), cache_dir=cache
    )
    result = await asyncio.to_thread(run_pipeline, groups, tmp_path / "morning", config)

    # A light the job calibrated itself would have added its entry (a mono key, before the
    # rows had the pattern): every one was the live stack's.
    assert len(list(cache.glob("*.json"))) == 5
    master = fits.getdata(result.groups[0].outputs["fits"])
    assert master.shape[0] == 3  # debayered: red, green and blue planes
    engine.dispose()


@pytest.fixture(scope="module")
def colour_rig(tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path) -> Iterator[str]:
    """A simulator whose main camera has an RGGB sensor."""
    devices = yaml.safe_load(OBSERVATORY_CONFIG.read_text(encoding="utf-8"))["devices"]
    devices["camera"][0]["sensortype"] = 2  # ASCOM SensorType.RGGB
    with SimulatorRig(
        run_dir=tmp_path_factory.mktemp("colour-rig"),
        cache_dir=catalog_cache,
        overrides={"devices": devices},
    ) as rig:
        yield rig.url


@pytest.fixture
async def colour_camera(colour_rig: str) -> AsyncIterator[Equipment]:
    equipment = build_equipment(simulator_profile(colour_rig))
    assert equipment.camera is not None
    await equipment.camera.connect()
    yield equipment
    await equipment.camera.disconnect()


async def test_a_colour_cameras_frames_are_recorded_with_its_pattern(
    tmp_path: Path, colour_camera: Equipment
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    store = FrameStore(tmp_path / "frames")
    capture = CaptureService(
        engine, colour_camera, store, CaptureConfig("simulators", DEFAULT_PATTERN, UTC)
    )
    await capture.capture(CaptureRequest(ExposureSpec(FrameType.DARK, 0.1, binning=4)))
    with Session(engine) as db:
        (row,) = db.scalars(select(Frame)).all()
    assert row.bayer_pattern == "RGGB"
    assert fits.getheader(store.root / row.path)["BAYERPAT"] == "RGGB"
    (info,) = session_frames(engine, store.root, row.session_id)
    assert (info.kind, info.bayer_pattern) == (FrameKind.DARK, BayerPattern.RGGB)
    engine.dispose()
