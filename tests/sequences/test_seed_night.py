"""The shipped seed night, end to end on the simulators with a simulated clock.

M31 transits at 20:04:57 UTC on 2026-11-22 at the simulator's site, so the meridian flip is
due at 20:09:57 (5 min past the meridian). The clock starts 3 min before that; the start
area, slew, centering, autofocus and guiding take 30-50 s of it, depending on the machine.
When the lights begin, the test moves the simulated clock on to 15 s before the flip, so the
flip falls among the 11 lights (30-45 s) however fast the machine was up to then.
The guider keeps a calibration from an earlier night (`calibrated_harness`); measuring one
is the guider tests' job.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from importlib.resources import files

import pytest

from sequences.document import parse_document
from sequences.frames import FrameType
from sequences.state import RunStatus
from tests.sequences.conftest import Harness

FLIP_DUE = datetime(2026, 11, 22, 20, 9, 57, tzinfo=UTC)


@pytest.fixture
def night_start() -> datetime:
    return FLIP_DUE - timedelta(minutes=3)


def first(events: list[str], prefix: str, after: int = 0) -> int:
    return next(i for i, e in enumerate(events) if i >= after and e.startswith(prefix))


async def test_the_seed_night_runs_end_to_end(calibrated_harness: Harness) -> None:
    harness = calibrated_harness
    document = parse_document(
        files("sequences").joinpath("examples", "seed_night.json").read_text()
    )
    data = document.model_dump(mode="json")
    target = data["targets"][0]
    for trigger in target["triggers"]:  # shorter settles keep the test short
        if trigger["kind"] == "dither_after_exposures":
            trigger["settle_time_s"] = 2.0
        if trigger["kind"] == "meridian_flip":
            trigger["guide_settle_time_s"] = 2.0
            trigger["settle_s"] = 1.0
    target["items"][4]["settle_time_s"] = 2.0  # start_guiding
    target["items"][3]["settings"] |= {"exposure_s": 0.5, "steps_out": 3}  # autofocus
    target["items"][5]["items"][0] |= {"exposure_s": 1.0, "count": 11}  # the lights

    run_id = await harness.runs.start(parse_document(data))
    await harness.until(lambda: "take_exposures started" in harness.events(run_id), 300)
    await harness.clock.sleep_until(FLIP_DUE - timedelta(seconds=15))
    status = await asyncio.wait_for(harness.runs.wait(run_id), 600)

    assert status is RunStatus.COMPLETED
    events = harness.events(run_id)
    order = [
        first(events, p)
        for p in (
            "park done",  # the start area parks before the roof opens
            "open_roof done",
            "open_cover done",
            "unpark done",
            "cool_camera done",
            "wait_for_altitude done",
            "slew done",
            "center done",
            "autofocus done",
            "start_guiding done",
            "meridian flip done",
            "take_exposures done",
        )
    ]
    order += [
        first(events, p, order[-1])
        for p in ("park done", "close_roof done", "close_cover done", "warm_camera done")
    ]
    assert order == sorted(order), events
    centered = [e for e in events if e.startswith("centering attempt")]
    final = re.search(r'(\d+)" off', centered[-1])
    assert final is not None
    assert int(final.group(1)) < 60
    assert "within tolerance" in centered[-1], centered
    flip = next(e for e in events if e.startswith("meridian flip at hour angle"))
    hour_angle_min = float(re.search(r"([+-][\d.]+) min", flip).group(1))  # type: ignore[union-attr]
    assert 5.0 <= hour_angle_min < 8.0
    assert "recentered" in next(e for e in events if e.startswith("meridian flip done"))
    assert any(e == "guiding restarted" for e in events)
    assert sum(e == "trigger dither_after_exposures" for e in events) == 3  # after 3, 6, 9

    frames = harness.frames(run_id)
    lights = [f for f in frames if f.frame_type is FrameType.LIGHT]
    assert len(lights) == 11
    assert all(f.filter_name == "L" for f in lights)
    assert all(f.guiding_rms_arcsec is not None for f in lights)
