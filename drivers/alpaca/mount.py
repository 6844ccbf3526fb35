"""Alpaca telescope (mount) driver: park, tracking, slews, sync, pulse guiding."""

from __future__ import annotations

import asyncio
import logging

from alpaca.telescope import GuideDirections

from drivers.alpaca._alpyca import Telescope as AlpycaTelescope
from drivers.alpaca._call import wait_until
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import GuideDirection, MountInfo, MountStatus, PierSide, RaDec
from drivers.errors import DeviceError, DeviceTimeout, FaultListener, NotSupported
from drivers.profile import MountAddress

log = logging.getLogger(__name__)

_SLEW_MARGIN_S = 30.0
_PULSE_MARGIN_S = 5.0


class AlpacaMount(AlpacaDevice[MountInfo]):
    def __init__(
        self, role: str, address: MountAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaTelescope(host, address.device_number, protocol), on_fault
        )
        self._mount_address = address

    async def _read_info(self) -> MountInfo:
        g, opt = self._get, self._get_optional
        return MountInfo(
            name=str(await g("Name")),
            alignment_mode=int(await g("AlignmentMode")),
            equatorial_system=int(await g("EquatorialSystem")),
            can_park=bool(await g("CanPark")),
            can_pulse_guide=bool(await g("CanPulseGuide")),
            can_sync=bool(await g("CanSync")),
            can_set_tracking=bool(await g("CanSetTracking")),
            site_latitude_deg=await opt("SiteLatitude"),
            site_longitude_deg=await opt("SiteLongitude"),
            site_elevation_m=await opt("SiteElevation"),
            focal_length_m=await opt("FocalLength"),
            aperture_m=await opt("ApertureDiameter"),
        )

    async def status(self) -> MountStatus:
        g, opt = self._get, self._get_optional
        return MountStatus(
            position=RaDec(float(await g("RightAscension")) % 24.0, float(await g("Declination"))),
            altitude_deg=await opt("Altitude"),
            azimuth_deg=await opt("Azimuth"),
            sidereal_time_hours=await opt("SiderealTime"),
            tracking=bool(await g("Tracking")),
            slewing=bool(await g("Slewing")),
            at_park=bool(await g("AtPark")),
            at_home=await opt("AtHome"),
            side_of_pier=PierSide(int(await opt("SideOfPier") or PierSide.UNKNOWN.value)),
            is_pulse_guiding=await opt("IsPulseGuiding"),
            guide_rate_ra_deg_s=await opt("GuideRateRightAscension"),
            guide_rate_dec_deg_s=await opt("GuideRateDeclination"),
        )

    async def position(self) -> RaDec:
        return RaDec(
            float(await self._get("RightAscension")) % 24.0, float(await self._get("Declination"))
        )

    async def unpark(self) -> None:
        await self._invoke("unpark", self._device.Unpark)
        await wait_until(self.role, "unpark", self._not_parked, self._mount_address.park_timeout_s)

    async def park(self) -> None:
        """Park and wait until the mount reports AtPark (bounded by the profile's timeout)."""
        if not self.info.can_park:
            raise NotSupported(self.role, "park", "mount cannot park")
        try:
            await self._invoke("park", self._device.Park)
        except DeviceTimeout:
            # Older drivers park synchronously inside the HTTP request, past alpyca's 5 s
            # timeout; the mount is parking all the same, so wait for AtPark.
            log.info(
                "%s: park call did not return within its timeout; waiting for AtPark", self.role
            )
        await wait_until(self.role, "park", self._at_park, self._mount_address.park_timeout_s)

    async def set_tracking(self, on: bool) -> None:
        await self._set("Tracking", bool(on))

    async def slew(self, target: RaDec) -> None:
        """Slew asynchronously and wait until done; the deadline grows with the distance.

        Cancelling the task (a run aborted as the weather turns), or a slew that fails or
        overruns its deadline, stops the mount with AbortSlew: a mount is never left
        slewing to a target nobody waits for."""
        here = await self.position()
        distance = here.separation_deg(target)
        timeout_s = distance / self._mount_address.min_slew_rate_deg_s + _SLEW_MARGIN_S
        start = asyncio.ensure_future(
            self._invoke(
                f"slew to {target}",
                self._device.SlewToCoordinatesAsync,
                target.ra_hours,
                target.dec_deg,
            )
        )
        try:
            await asyncio.shield(start)  # a cancel must not let AbortSlew overtake the slew
            await wait_until(self.role, f"slew to {target}", self._not_slewing, timeout_s)
        except (asyncio.CancelledError, DeviceError):
            await asyncio.shield(self._undo_after(start, self.abort_slew, "abort slew"))
            raise

    async def abort_slew(self) -> None:
        await self._invoke("abort slew", self._device.AbortSlew, retry=True)

    async def sync(self, position: RaDec) -> None:
        await self._invoke(
            f"sync to {position}",
            self._device.SyncToCoordinates,
            position.ra_hours,
            position.dec_deg,
        )

    async def pulse_guide(self, direction: GuideDirection, duration_ms: int) -> None:
        """Send one guide pulse and wait until the mount reports it finished."""
        if duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0, got {duration_ms}")
        operation = f"pulse guide {direction.name} {duration_ms} ms"
        await self._invoke(
            operation, self._device.PulseGuide, GuideDirections(direction.value), int(duration_ms)
        )
        await wait_until(
            self.role,
            operation,
            self._not_pulse_guiding,
            duration_ms / 1000.0 + _PULSE_MARGIN_S,
            interval_s=0.02,
        )

    async def set_guide_rates(self, ra_deg_s: float, dec_deg_s: float) -> None:
        await self._set("GuideRateRightAscension", float(ra_deg_s))
        await self._set("GuideRateDeclination", float(dec_deg_s))

    async def _not_parked(self) -> bool:
        return not await self._get("AtPark")

    async def _at_park(self) -> bool:
        return bool(await self._get("AtPark"))

    async def _not_slewing(self) -> bool:
        return not await self._get("Slewing")

    async def _not_pulse_guiding(self) -> bool:
        return not await self._get("IsPulseGuiding")
