"""A simulator that dies mid-run: the instruction fails by its error behaviour, and the end area
parks once the devices are back (the drivers reconnect a device that restarted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from sequences.document import parse_document
from sequences.model import Status
from sequences.state import RunStatus
from tests.sequences.conftest import M31_TARGET, NIGHT_START, open_harness


async def test_a_simulator_stopped_mid_run_fails_the_instruction_and_the_end_area_parks(
    tmp_path: Path, catalog_cache: Path
) -> None:
    with SimulatorRig(run_dir=tmp_path / "sim", cache_dir=catalog_cache) as rig:
        equipment = build_equipment(simulator_profile(rig.url))
        try:
            assert not any((await equipment.connect_all()).values())
            async with open_harness(tmp_path, equipment, rig.url, catalog_cache, NIGHT_START) as h:
                document = {
                    "name": "power cut",
                    "start": {"items": [{"kind": "unpark"}]},
                    "targets": [
                        {
                            **M31_TARGET,
                            "items": [
                                {"kind": "slew"},
                                {"kind": "take_exposures", "count": 20, "exposure_s": 1.0},
                            ],
                        }
                    ],
                    "end": {"items": [{"kind": "park", "attempts": 20, "retry_delay_s": 1.0}]},
                }
                run_id = await h.runs.start(parse_document(document))
                run = asyncio.create_task(h.runs.wait(run_id))
                await h.until(lambda: len(h.frames(run_id)) >= 2)
                await asyncio.to_thread(rig.stop)  # the simulators die mid-exposure
                await h.until(lambda: h.state(run_id).nodes.get("end.items[0]") is not None)
                await asyncio.sleep(2.0)  # a park attempt or two fail while they are away
                await asyncio.to_thread(rig.start)  # same port: the devices come back, reset
                status = await asyncio.wait_for(run, 120)

                state = h.state(run_id)
                assert status is RunStatus.COMPLETED
                lights = state.nodes["targets[0].items[1]"]
                assert lights.status is Status.FAILED
                assert lights.error is not None
                assert "not" in lights.error.lower()  # NotConnected: cannot reach the server
                park = state.nodes["end.items[0]"]
                assert park.status is Status.SUCCEEDED
                assert park.attempts >= 2
                assert equipment.mount is not None
                assert (await equipment.mount.status()).at_park
                assert 2 <= len(h.frames(run_id)) < 20  # the frames taken before the cut are kept
        finally:
            await equipment.disconnect_all()
