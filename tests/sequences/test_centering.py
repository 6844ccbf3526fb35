"""Centering against a simulator whose mount points 30' x 20' off, solved by the real solver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.base import RaDec, RawFrame
from drivers.equipment import Equipment
from processing.solve import NoMatch
from sequences.centering import CenteringConfig, Correction, FrameSolution, center_target
from sequences.platesolve import frame_solver, prepare_solver

POINTING_ERROR_ARCMIN = (30.0, 20.0)  # RA, Dec as the simulator takes them
TARGET = RaDec(5.5, 22.0)  # a rich field near the Crab


@pytest.fixture(scope="module")
def offset_simulator(
    tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path
) -> Iterator[str]:
    with SimulatorRig(
        run_dir=tmp_path_factory.mktemp("offset-simulator"),
        cache_dir=catalog_cache,
        overrides={
            "pointing_error_ra": POINTING_ERROR_ARCMIN[0],
            "pointing_error_dec": POINTING_ERROR_ARCMIN[1],
        },
    ) as rig:
        yield rig.url


@pytest.fixture
async def off_mount(offset_simulator: str) -> AsyncIterator[Equipment]:
    equipment = build_equipment(simulator_profile(offset_simulator))
    assert not any((await equipment.connect_all()).values())
    assert equipment.mount is not None
    await equipment.mount.unpark()
    await equipment.mount.set_tracking(True)
    yield equipment
    await equipment.disconnect_all()


def rendered_center(reported: RaDec) -> RaDec:
    """Where the simulator really points when its mount reports `reported`."""
    ra_error_h = POINTING_ERROR_ARCMIN[0] / 60.0 / 15.0
    return RaDec(reported.ra_hours + ra_error_h, reported.dec_deg + POINTING_ERROR_ARCMIN[1] / 60.0)


async def test_centering_converges_within_an_arcminute_in_three_attempts(
    off_mount: Equipment, catalog_cache: Path
) -> None:
    assert off_mount.mount is not None
    assert off_mount.camera is not None
    await prepare_solver(off_mount, catalog_cache)
    report = await center_target(
        off_mount.mount,
        off_mount.camera,
        TARGET,
        frame_solver(off_mount, catalog_cache),
        CenteringConfig(exposure_s=1.0),
    )
    assert report.success, report
    assert len(report.attempts) <= 3
    first = report.attempts[0]
    assert first.error_arcsec is not None
    assert 25 * 60 < first.error_arcsec < 35 * 60  # the configured error, seen by the solver
    # The simulator's sync moves its sky too: the loop notices and slews to offsets instead.
    assert [a.correction for a in report.attempts] == [
        Correction.SYNC,
        Correction.OFFSET,
        Correction.NONE,
    ]
    reported = (await off_mount.mount.status()).position
    truth_error_arcsec = rendered_center(reported).separation_deg(TARGET) * 3600
    assert truth_error_arcsec < 60
    assert report.final_error_arcsec is not None
    assert abs(report.final_error_arcsec - truth_error_arcsec) < 10  # the solver agrees
    texts = [a.describe(report.tolerance_arcsec) for a in report.attempts]
    assert texts[0].startswith("centering attempt 1: ")
    assert "syncing the mount" in texts[0]
    assert texts[-1].endswith('within tolerance (60")'), texts


async def test_a_wild_solve_is_never_acted_on(off_mount: Equipment) -> None:
    """A solver answering 40 deg away (a fault the real solver should not produce) is refused."""
    assert off_mount.mount is not None
    assert off_mount.camera is not None
    answers = iter([RaDec(8.0, 60.0)])

    async def wild_then_fail(frame: RawFrame, hint: RaDec) -> FrameSolution:
        answer = next(answers, None)
        if answer is None:
            raise NoMatch("no match")
        return FrameSolution(answer, 0.0)

    report = await center_target(
        off_mount.mount,
        off_mount.camera,
        TARGET,
        wild_then_fail,
        CenteringConfig(exposure_s=0.5, max_attempts=2),
    )
    assert not report.success
    assert [a.correction for a in report.attempts] == [Correction.RETRY, Correction.RETRY]
    assert "beyond" in report.attempts[0].note
    assert "no usable solve" in report.reason
    reported = (await off_mount.mount.status()).position
    assert reported.separation_deg(TARGET) < 0.01  # the mount stayed on the target
