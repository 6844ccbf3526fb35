"""The roof and the cover in the order that keeps the telescope safe, for every caller.

The safety supervisor, the sequence instructions and the API's buttons all close and open
through here, so the rule is kept in one place: a roll-off roof (a dome without azimuth) never
moves over a mount that does not report parked, because the roof would hit the telescope. A
dome with a rotating shutter may move whatever the mount does.
"""

from __future__ import annotations

import logging

from drivers.base import Dome, Mount, ShutterState
from drivers.errors import DeviceError, OperationFailed

log = logging.getLogger(__name__)


class RoofRefused(OperationFailed):
    """The roof was not moved because moving it could hit the telescope: park the mount first."""


def is_roll_off_roof(dome: Dome) -> bool:
    return not dome.info.can_set_azimuth


async def require_parked_mount(dome: Dome, mount: Mount | None, operation: str) -> None:
    """`RoofRefused` when `dome` is a roll-off roof and the mount is not known to be parked."""
    if not is_roll_off_roof(dome):
        return
    if mount is None:
        return  # no mount in the profile: nothing under the roof that we drive
    try:
        parked = (await mount.status()).at_park
    except DeviceError as e:
        why = f"the mount does not answer ({e.message}); cannot tell it is parked"
        raise RoofRefused(dome.role, operation, why) from e
    if not parked:
        raise RoofRefused(
            dome.role, operation, "the mount does not report parked; park it before moving the roof"
        )


async def close_roof(dome: Dome, mount: Mount | None) -> None:
    """Close the shutter or roof once the guard allows; returns when it reports closed. A roof
    already closed is left alone (nothing moves, so the guard has nothing to refuse)."""
    if (await dome.status()).shutter is ShutterState.CLOSED:
        return
    await require_parked_mount(dome, mount, "close")
    await dome.close_shutter()


async def open_roof(dome: Dome, mount: Mount | None) -> None:
    """Open the shutter or roof once the guard allows; returns when it reports open. A roof
    already open is left alone (e.g. a resumed run's start area over a mount that tracks)."""
    if (await dome.status()).shutter is ShutterState.OPEN:
        return
    await require_parked_mount(dome, mount, "open")
    await dome.open_shutter()
