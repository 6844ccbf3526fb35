"""Ephemerides with astropy, offline: time and Earth-orientation data come from installed packages.

astropy normally downloads fresh IERS tables when its bundled ones are older than 30 days, and
raises for dates past the tables. An observatory has no guaranteed internet, so Nightowl uses
the tables of the `astropy-iers-data` package only, and degrades to a warning (at most a few
arcseconds of error in sidereal time) past their end instead of failing a night.
"""

from __future__ import annotations

import math

from astropy.utils import data as astropy_data
from astropy.utils import iers


def configure_astropy_offline() -> None:
    """Forbid astropy any network access; call once at process start (idempotent)."""
    astropy_data.conf.allow_internet = False
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"


def airmass(altitude_deg: float) -> float | None:
    """Airmass at an apparent altitude (Pickering 2002; good to the horizon), None below it."""
    if altitude_deg <= 0.0:
        return None
    h = altitude_deg
    return 1.0 / math.sin(math.radians(h + 244.0 / (165.0 + 47.0 * h**1.1)))
