"""Center a target: slew, expose, plate-solve, correct, repeat until within tolerance.

The first correction is a sync on the solved position followed by a re-slew, as NINA does:
on a mount whose sync works, that fixes the pointing model for the rest of the night. Some
mounts (and the simulator, whose sync moves the rendered sky along with the reported position)
accept the sync but keep pointing just as far off; when an attempt after a sync is not clearly
better than the one before, the loop stops syncing and slews to an offset aim point instead
(the target minus the measured error), which converges on any mount that slews repeatably.

A solve that lands implausibly far from where the mount says it points (`max_correction_deg`)
is treated as a failed attempt, never as a correction: a wrong solve must not send the mount
across the sky.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from drivers.base import Camera, Mount, RaDec, RawFrame
from processing.solve import SolveError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameSolution:
    """What a plate solve tells the engine about a frame."""

    center: RaDec
    """The J2000 position of the frame's centre."""
    rotation_deg: float
    """Position angle of the frame's +y axis, from north through east, [0, 360)."""


FrameSolver = Callable[[RawFrame, RaDec], Awaitable[FrameSolution]]
"""Solves a frame (with where the mount said it pointed as the hint); raises `SolveError` when
it cannot."""


@dataclass(frozen=True)
class CenteringConfig:
    tolerance_arcmin: float = 1.0
    max_attempts: int = 5
    exposure_s: float = 2.0
    max_correction_deg: float = 5.0
    """A solve further than this from the mount's reported position is not trusted."""
    use_sync: bool = True
    """Try sync + re-slew first; offset slewing is used anyway once a sync does not help."""
    sync_min_improvement: float = 0.5
    """After a sync the error must shrink below this fraction of the previous error."""

    def __post_init__(self) -> None:
        if self.tolerance_arcmin <= 0:
            raise ValueError(f"tolerance_arcmin must be > 0, got {self.tolerance_arcmin}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")
        if self.max_correction_deg <= 0:
            raise ValueError(f"max_correction_deg must be > 0, got {self.max_correction_deg}")


class Correction(StrEnum):
    NONE = "none"
    """Within tolerance, or the last attempt."""
    SYNC = "sync"
    OFFSET = "offset"
    RETRY = "retry"
    """The solve failed or was not trusted: expose again without moving."""


@dataclass(frozen=True)
class CenteringAttempt:
    attempt: int
    solved: RaDec | None
    error_arcsec: float | None
    """Angular distance from the solved center to the target."""
    correction: Correction
    note: str = ""

    def describe(self, tolerance_arcsec: float) -> str:
        """For people: 'centering attempt 1: 3" off, within tolerance'."""
        off = f'{self.error_arcsec:.0f}" off' if self.error_arcsec is not None else "not solved"
        if self.correction is Correction.RETRY:
            outcome = f"trying again ({self.note})" if self.note else "trying again"
        elif self.correction is Correction.SYNC:
            outcome = "syncing the mount and slewing again"
        elif self.correction is Correction.OFFSET:
            outcome = "slewing to an offset aim point"
        elif self.error_arcsec is not None and self.error_arcsec <= tolerance_arcsec:
            outcome = f'within tolerance ({tolerance_arcsec:.0f}")'
        else:
            outcome = f'outside tolerance ({tolerance_arcsec:.0f}"), no attempts left'
        return f"centering attempt {self.attempt}: {off}, {outcome}"


@dataclass
class CenteringReport:
    target: RaDec
    tolerance_arcsec: float
    attempts: list[CenteringAttempt] = field(default_factory=list)
    success: bool = False
    reason: str = ""

    @property
    def final_error_arcsec(self) -> float | None:
        """The last trusted error (an untrusted solve's distance is not an error)."""
        errors = [
            a.error_arcsec
            for a in self.attempts
            if a.error_arcsec is not None and a.correction is not Correction.RETRY
        ]
        return errors[-1] if errors else None


async def center_target(
    mount: Mount,
    camera: Camera,
    target: RaDec,
    solve: FrameSolver,
    config: CenteringConfig = CenteringConfig(),
) -> CenteringReport:
    """Run the centering loop; device errors propagate, solve failures become attempts."""
    report = CenteringReport(target=target, tolerance_arcsec=config.tolerance_arcmin * 60.0)
    syncing = config.use_sync
    aim = target
    last_error: float | None = None
    synced_last = False
    await mount.slew(aim)
    for attempt in range(1, config.max_attempts + 1):
        reported = (await mount.status()).position
        frame = await camera.expose(config.exposure_s, light=True)
        try:
            solved = (await solve(frame, reported)).center
        except SolveError as e:
            report.attempts.append(
                CenteringAttempt(attempt, None, None, Correction.RETRY, f"solve failed: {e}")
            )
            log.warning("centering attempt %d: solve failed: %s", attempt, e)
            continue
        error = solved.separation_deg(target) * 3600.0
        off_mount = solved.separation_deg(reported)
        if off_mount > config.max_correction_deg:
            note = (
                f"solved {off_mount:.2f} deg from the mount's position, beyond the "
                f"{config.max_correction_deg} deg bound; not correcting on it"
            )
            report.attempts.append(CenteringAttempt(attempt, solved, error, Correction.RETRY, note))
            log.warning("centering attempt %d: %s", attempt, note)
            continue
        if error <= report.tolerance_arcsec:
            report.attempts.append(CenteringAttempt(attempt, solved, error, Correction.NONE))
            report.success = True
            log.info('centering attempt %d: %.1f" off, within tolerance', attempt, error)
            return report
        if (
            synced_last
            and last_error is not None
            and error > config.sync_min_improvement * last_error
        ):
            log.info(
                'centering: sync did not help (%.0f" -> %.0f"); slewing to offsets instead',
                last_error,
                error,
            )
            syncing = False
        last_error = error
        if attempt == config.max_attempts:
            report.attempts.append(CenteringAttempt(attempt, solved, error, Correction.NONE))
            break
        if syncing:
            await mount.sync(solved)
            aim = target
            correction = Correction.SYNC
        else:
            aim = offset_aim(aim, solved, target)
            correction = Correction.OFFSET
        synced_last = syncing
        report.attempts.append(CenteringAttempt(attempt, solved, error, correction))
        log.info('centering attempt %d: %.0f" off; correcting by %s', attempt, error, correction)
        await mount.slew(aim)
    report.reason = (
        f'still {report.final_error_arcsec:.0f}" off after {config.max_attempts} attempts'
        if report.final_error_arcsec is not None
        else f"no usable solve in {config.max_attempts} attempts"
    )
    return report


def offset_aim(aim: RaDec, solved: RaDec, target: RaDec) -> RaDec:
    """Shift the aim point by target - solved (RA in hours, wrapped; Dec clamped)."""
    d_ra = (target.ra_hours - solved.ra_hours + 12.0) % 24.0 - 12.0
    ra = (aim.ra_hours + d_ra) % 24.0
    if ra >= 24.0:  # a tiny negative value wraps to exactly 24.0 in floating point
        ra = 0.0
    dec = min(90.0, max(-90.0, aim.dec_deg + target.dec_deg - solved.dec_deg))
    return RaDec(ra, dec)
