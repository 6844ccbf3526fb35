"""Sky coordinates typed by people: decimal or sexagesimal, read and echoed in both forms.

Right ascension is in hours, declination in degrees, both J2000. Accepted forms::

    RA    00 42 44.3   00:42:44.3   0h42m44.3s   0.7123 (decimal hours)   10.68d (degrees)
    Dec   +41 16 09    +41:16:09    +41d16m09s   +41°16'09"   41.269 (decimal degrees)

A pair is one string: ``00 42 44.3 +41 16 09``, ``0h42m44s +41d16m09s``, ``10.68d, 41.27``.
Parsing goes through `astropy.coordinates.Angle`; every refusal is a `CoordinateError` whose
message names the forms expected, so it can be shown beside the field as it is.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import Annotated

import astropy.units as u
from astropy.coordinates import Angle
from pydantic import BeforeValidator, Field, WithJsonSchema

RA_FORMS = "00 42 44.3, 00:42:44.3, 0h42m44.3s, 0.7123 (decimal hours) or 10.68d (degrees)"
DEC_FORMS = "+41 16 09, +41:16:09, +41d16m09s, +41°16'09\" or 41.269 (decimal degrees)"
PAIR_FORMS = "00 42 44.3 +41 16 09, 00:42:44.3 +41:16:09, 0h42m44s +41d16m09s or 0.7123, 41.269"

_SIGNED = re.compile(r"^[+\-−]")


class CoordinateError(ValueError):
    """Text that is not a coordinate, or one out of range; the message says which forms work."""


@dataclass(frozen=True)
class SkyPosition:
    """A J2000 position: RA in hours [0, 24), Dec in degrees [-90, 90]."""

    ra_hours: float
    dec_deg: float

    @property
    def ra_hms(self) -> str:
        return format_ra(self.ra_hours)

    @property
    def dec_dms(self) -> str:
        return format_dec(self.dec_deg)


def _angle(text: str, unit: u.UnitBase) -> float:
    cleaned = text.strip().replace("−", "-").replace("′", "'").replace("″", '"')
    if not cleaned:
        raise ValueError("empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's "24 h" warnings: the range check says it
        value = Angle(cleaned, unit=unit)
    number = float(value.hour if unit is u.hourangle else value.deg)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def parse_ra_hours(value: str | float) -> float:
    """Right ascension in hours from a number (hours) or any form of `RA_FORMS`.

    Raises `CoordinateError` for text that is no angle or lies outside [0, 24) h."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        hours = float(value)
    else:
        try:
            hours = _angle(str(value), u.hourangle)
        except (ValueError, TypeError, u.UnitsError) as e:
            raise CoordinateError(
                f"cannot read {value!r} as a right ascension: give it as {RA_FORMS}"
            ) from e
    if not (math.isfinite(hours) and 0.0 <= hours < 24.0):
        raise CoordinateError(
            f"right ascension {value!r} is outside 0h to 24h: give it as {RA_FORMS}"
        )
    return hours


def parse_dec_deg(value: str | float) -> float:
    """Declination in degrees from a number (degrees) or any form of `DEC_FORMS`.

    Raises `CoordinateError` for text that is no angle or lies outside [-90, +90] deg."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        degrees = float(value)
    else:
        try:
            degrees = _angle(str(value), u.deg)
        except (ValueError, TypeError, u.UnitsError) as e:
            raise CoordinateError(
                f"cannot read {value!r} as a declination: give it as {DEC_FORMS}"
            ) from e
    if not (math.isfinite(degrees) and -90.0 <= degrees <= 90.0):
        raise CoordinateError(
            f"declination {value!r} is outside -90° to +90°: give it as {DEC_FORMS}"
        )
    return degrees


def parse_position(text: str) -> SkyPosition:
    """RA and Dec from one string (`PAIR_FORMS`): split at a comma, else before the signed
    declination, else into two halves of equal word counts. Raises `CoordinateError`."""
    ra_text, dec_text = _split_pair(text.strip().replace("−", "-"))
    return SkyPosition(parse_ra_hours(ra_text), parse_dec_deg(dec_text))


def looks_like_position(text: str) -> bool:
    """Whether `text` reads as a coordinate pair (a name such as "M31" or "NGC 224" does not)."""
    try:
        parse_position(text)
    except CoordinateError:
        return False
    return True


def _split_pair(text: str) -> tuple[str, str]:
    if "," in text:
        ra_text, _, dec_text = text.partition(",")
        return ra_text, dec_text
    words = text.split()
    for i in range(1, len(words)):
        if _SIGNED.match(words[i]):
            return " ".join(words[:i]), " ".join(words[i:])
    if len(words) >= 2 and len(words) % 2 == 0:
        half = len(words) // 2
        return " ".join(words[:half]), " ".join(words[half:])
    raise CoordinateError(
        f"cannot read {text!r} as a right ascension and a declination: give them as {PAIR_FORMS}"
    )


def format_ra(hours: float) -> str:
    """``00h42m44.35s``: hours, minutes and seconds to 0.01 s, wrapped into [0, 24) h."""
    centiseconds = round(hours * 360_000.0) % (24 * 360_000)
    h, rest = divmod(centiseconds, 360_000)
    m, cs = divmod(rest, 6_000)
    return f"{h:02d}h{m:02d}m{cs // 100:02d}.{cs % 100:02d}s"


def format_dec(degrees: float) -> str:
    """``+41d16m08.6s``: sign, degrees, arcminutes and arcseconds to 0.1″."""
    sign = "-" if degrees < 0 else "+"
    tenths = round(abs(degrees) * 36_000.0)
    d, rest = divmod(tenths, 36_000)
    m, ts = divmod(rest, 600)
    return f"{sign}{d:02d}d{m:02d}m{ts // 10:02d}.{ts % 10}s"


def _ra_field(value: object) -> object:
    return parse_ra_hours(value) if isinstance(value, str) else value


def _dec_field(value: object) -> object:
    return parse_dec_deg(value) if isinstance(value, str) else value


RaHours = Annotated[
    float,
    BeforeValidator(_ra_field),
    Field(ge=0, lt=24, description=f"J2000 right ascension: hours, or text as {RA_FORMS}"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": 24},
                {"type": "string", "examples": ["00 42 44.3", "0h42m44.3s", "10.68d"]},
            ],
            "description": f"J2000 right ascension: hours, or text as {RA_FORMS}",
        },
        mode="validation",
    ),
]
"""A model field of right ascension in hours that also takes any text form of `RA_FORMS`."""

DecDeg = Annotated[
    float,
    BeforeValidator(_dec_field),
    Field(ge=-90, le=90, description=f"J2000 declination: degrees, or text as {DEC_FORMS}"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": -90, "maximum": 90},
                {"type": "string", "examples": ["+41 16 09", "+41d16m09s", "+41:16:09"]},
            ],
            "description": f"J2000 declination: degrees, or text as {DEC_FORMS}",
        },
        mode="validation",
    ),
]
"""A model field of declination in degrees that also takes any text form of `DEC_FORMS`."""
