"""Dome slaving: the dome follows the telescope for as long as a run has it on.

A background task looks every `poll_s` seconds (wall time: the dome moves in real time whatever
the run's clock does) at where the mount points and re-aims the dome once the slit is further
from the telescope's line of sight than the resync tolerance (`geometry.resync_tolerance_deg`).
While the mount slews the task waits for it to arrive rather than chase it.

`align()` does the same at once and returns when the dome is where the mount needs it. The
engine calls it before every exposure that sees the sky (each light or flat of
`take_exposures`), after a slew and before centering, so no exposure starts while the dome
still moves. Both go through one lock: there is only one dome slew at a time.

The hour angle comes from the mount's own sidereal time when it reports one (it is the
mount's clock that its position belongs to), else from the site and the run's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import Dome, Mount, MountStatus
from drivers.errors import DeviceError
from sequences.astro import Site, hour_angle_hours
from sequences.clock import Clock
from sequences.dome.geometry import (
    SlitAim,
    azimuth_difference_deg,
    resync_tolerance_deg,
    slit_aim,
)

if TYPE_CHECKING:
    from sequences.context import EventSink

log = logging.getLogger(__name__)

POLL_S = 2.0


@dataclass(frozen=True)
class Alignment:
    """The outcome of one look at the dome and the mount."""

    aim: SlitAim
    dome_azimuth_deg: float
    """Where the dome is now (after a slew, if one was needed)."""
    moved: bool


class DomeSlaving:
    """The dome following `mount` (see the module); `start()` it, `stop()` it at the end."""

    def __init__(
        self,
        dome: Dome,
        mount: Mount,
        site: Site,
        clock: Clock,
        events: EventSink,
        *,
        poll_s: float = POLL_S,
    ) -> None:
        self._dome = dome
        self._mount = mount
        self._site = site
        self._clock = clock
        self._events = events
        self._poll_s = poll_s
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._follow(), name="dome slaving")

    async def stop(self) -> None:
        """Stop following; a dome slew under way is stopped by its driver."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def aim(self, status: MountStatus | None = None) -> SlitAim:
        """Where the slit must be for the mount's pointing now; `GeometryError` when the
        profile's geometry puts the telescope outside the dome."""
        status = status if status is not None else await self._mount.status()
        if status.sidereal_time_hours is not None:
            ha = (status.sidereal_time_hours - status.position.ra_hours + 12.0) % 24.0 - 12.0
        else:
            ha = hour_angle_hours(status.position, self._site, self._clock.now())
        return slit_aim(
            self._site.latitude_deg,
            ha,
            status.position.dec_deg,
            status.side_of_pier,
            self._dome.geometry,
        )

    async def align(self) -> Alignment:
        """Re-aim the dome if the slit would vignette, and return once it is there."""
        async with self._lock:
            aim = await self.aim()
            dome = await self._dome.status()
            here = dome.azimuth_deg if dome.azimuth_deg is not None else aim.azimuth_deg
            aperture_m = self._mount.info.aperture_m or 0.0
            tolerance = resync_tolerance_deg(aim, self._dome.geometry, aperture_m)
            off_deg = abs(azimuth_difference_deg(here, aim.azimuth_deg))
            if not dome.slewing and off_deg <= tolerance:
                return Alignment(aim, here, moved=False)
            why = (
                "it was moving"
                if dome.slewing
                else f"the slit was {off_deg:.1f} deg off, {tolerance:.1f} deg allowed"
            )
            await self._events.emit(
                "info",
                f"dome to {aim.azimuth_deg:.1f} deg ({why})",
                data={"azimuth_deg": aim.azimuth_deg, "off_deg": off_deg},
            )
            await self._dome.slew_to_azimuth(aim.azimuth_deg)
            return Alignment(aim, aim.azimuth_deg, moved=True)

    async def _follow(self) -> None:
        failing = False
        while True:
            try:
                if not (await self._mount.status()).slewing:
                    await self.align()
                failing = False
            except DeviceError as e:
                log.warning("dome slaving: %s", e)
                if not failing:  # one event per spell of failures, not one per poll
                    await self._events.emit("warning", f"dome slaving: {e}")
                failing = True
            await asyncio.sleep(self._poll_s)
