"""A sequence guided by PHD2: the fake PHD2 server guides while the simulators' camera takes
the lights; the sequence's guiding, dither and settle steps run unchanged, and the light rows
carry the guiding RMS PHD2's guide steps gave. As NINA's, the dither comes only before a light."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from drivers.equipment import Equipment
from drivers.guider.phd2 import Phd2Guider
from drivers.profile import Phd2GuiderChoice
from sequences.frames import FrameType
from sequences.state import RunStatus
from tests.drivers.phd2_fake import checked_fake
from tests.sequences.conftest import M31_TARGET, open_harness


async def test_a_sequence_guides_dithers_and_settles_with_phd2(
    tmp_path: Path,
    equipment: Equipment,
    simulator_url: str,
    catalog_cache: Path,
    night_start: datetime,
) -> None:
    document = {
        "name": "guided by PHD2",
        "targets": [
            {
                **M31_TARGET,
                "triggers": [
                    {"kind": "dither_after_exposures", "after_exposures": 1, "pixels": 2.0}
                ],
                "items": [
                    {"kind": "start_guiding"},
                    {"kind": "take_exposures", "count": 3, "exposure_s": 0.5},
                    {"kind": "stop_guiding"},
                ],
            }
        ],
    }
    async with checked_fake() as phd2:
        guider = Phd2Guider(
            Phd2GuiderChoice.model_validate(
                {
                    "kind": "phd2",
                    "host": "127.0.0.1",
                    "port": phd2.port,
                    "settle": {"pixels": 1.5, "time_s": 2, "timeout_s": 20},
                }
            )
        )
        try:
            async with open_harness(
                tmp_path, equipment, simulator_url, catalog_cache, night_start, guider
            ) as harness:
                run_id, status = await harness.run(document, timeout_s=120)
                events = harness.events(run_id)
                frames = harness.frames(run_id)
        finally:
            await guider.close()

    assert status is RunStatus.COMPLETED, events
    methods = [r["method"] for r in phd2.requests]
    dithers = sum(e == "trigger dither_after_exposures" for e in events)
    # Before the 2nd and the 3rd light; not after the 3rd, where stop_guiding comes next.
    assert dithers == 2, events
    last_dither = max(i for i, e in enumerate(events) if e == "trigger dither_after_exposures")
    assert last_dither < events.index("take_exposures done"), events
    assert methods.count("guide") == 1
    assert methods.count("dither") == dithers
    assert "stop_capture" in methods
    settled = [m for m in phd2.sent if m.get("Event") == "SettleDone"]
    assert [m["Status"] for m in settled] == [0] * (1 + dithers)
    lights = [f for f in frames if f.frame_type is FrameType.LIGHT]
    assert len(lights) == 3
    # The fake walks 0.2 px (0.32") per axis around the lock: a few tenths of an arcsec.
    rms = [f.guiding_rms_arcsec for f in lights]
    assert all(r is not None and 0.05 < r < 2.0 for r in rms), rms
