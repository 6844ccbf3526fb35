"""Frame file names from a NINA-style pattern, kept inside the frames root whatever the input.

Tokens (as NINA spells them): ``$$TARGETNAME$$``, ``$$DATEMINUS12$$`` (the night's date: local
date 12 hours earlier), ``$$DATE$$``, ``$$TIME$$``, ``$$DATETIME$$``, ``$$IMAGETYPE$$``,
``$$FILTER$$``, ``$$EXPOSURETIME$$``, ``$$SENSORTEMP$$``, ``$$SETTEMP$$``, ``$$GAIN$$``,
``$$OFFSET$$``, ``$$BINNING$$``, ``$$FRAMENR$$``, ``$$CAMERA$$``, ``$$READOUTMODE$$``.
``/`` in the pattern separates folders; every value is sanitised so that it can neither add
folders nor climb out of the root (a target named ``../../etc`` becomes ``_.._etc``).

Names are Unicode (``"Ω Cen"``), file names and FITS cards are ASCII: `ascii_text` transliterates
(``"Ω Cen"`` -> ``"Omega Cen"``) for both, so a frame of Omega Centauri lands in ``Omega Cen/``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import PurePosixPath

DEFAULT_PATTERN = (
    "$$TARGETNAME$$/$$DATEMINUS12$$/$$IMAGETYPE$$/"
    "$$DATETIME$$_$$FILTER$$_$$EXPOSURETIME$$s_$$FRAMENR$$"
)
TOKENS = frozenset(
    {
        "TARGETNAME",
        "DATEMINUS12",
        "DATE",
        "TIME",
        "DATETIME",
        "IMAGETYPE",
        "FILTER",
        "EXPOSURETIME",
        "SENSORTEMP",
        "SETTEMP",
        "GAIN",
        "OFFSET",
        "BINNING",
        "FRAMENR",
        "CAMERA",
        "READOUTMODE",
    }
)
_TOKEN = re.compile(r"\$\$([A-Z0-9]+)\$\$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+()\- ]")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


def _greek_letter(letter: str) -> str:
    """A Greek letter's name as star names spell it (Omega for Ω, alpha for α), from Unicode."""
    name = unicodedata.name(letter).split()[-1].replace("LAMDA", "LAMBDA")
    return name.capitalize() if letter.isupper() else name.lower()


_GREEK = {
    chr(c): _greek_letter(chr(c))
    for c in range(0x391, 0x3CA)  # Α to ω; accented letters are decomposed before
    if chr(c).isalpha() and not unicodedata.decomposition(chr(c))
}
_TRANSLITERATION = str.maketrans(
    {
        **_GREEK,
        **dict.fromkeys("‘’‚‛′", "'"),
        **dict.fromkeys("“”„‟«»″", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
        "…": "...",
        "×": "x",
        "⁄": "/",
        "·": ".",
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "þ": "th",
        "Þ": "Th",
    }
)


def night_date(moment_utc: datetime, timezone: tzinfo) -> date:
    """The observing night a moment belongs to: the local date 12 hours earlier."""
    return (moment_utc.astimezone(timezone) - timedelta(hours=12)).date()


def validate_pattern(pattern: str) -> str:
    """Return `pattern` or raise `ValueError` naming an unknown token or an empty segment."""
    unknown = sorted(set(_TOKEN.findall(pattern)) - TOKENS)
    if unknown:
        raise ValueError(
            f"unknown token(s) {', '.join(f'$${t}$$' for t in unknown)}; "
            f"known: {', '.join(sorted(TOKENS))}"
        )
    if any(not part.strip() for part in pattern.split("/")):
        raise ValueError("the pattern has an empty folder name (a leading, trailing or '//')")
    return pattern


@dataclass(frozen=True)
class FrameNaming:
    """What a frame's file name can be made of."""

    target_name: str | None
    image_type: str
    filter_name: str | None
    exposure_s: float
    exposure_start_utc: datetime
    sensor_temperature_c: float | None
    set_point_c: float | None
    gain: int | None
    offset: int | None
    bin_x: int
    bin_y: int
    frame_number: int
    camera_name: str | None
    readout_mode: int | None


def ascii_text(value: str) -> str:
    """`value` in printable ASCII, for FITS cards and file names.

    Accents are dropped (Unicode NFKD: "é" -> "e", "ﬁ" -> "fi"), Greek letters spelled out as
    star names read ("Ω Cen" -> "Omega Cen", "α Lyr" -> "alpha Lyr"), typographic dashes and
    quotes made plain ("–" -> "-", "«»" -> '"'), a few Latin letters written as in English
    ("ß" -> "ss"); anything else, control characters included, becomes "?".
    """
    decomposed = unicodedata.normalize("NFKD", value)
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return _NOT_PRINTABLE_ASCII.sub("?", bare.translate(_TRANSLITERATION))


def sanitise(value: str) -> str:
    """One safe path segment: no separators, no leading dot, nothing outside a small alphabet
    (other text is transliterated first, see `ascii_text`)."""
    plain = ascii_text(value).replace("/", "_").replace("\\", "_")
    cleaned = _UNSAFE.sub("_", plain).strip()
    cleaned = cleaned.lstrip(".") or "_"
    return cleaned[:120]


def render(pattern: str, naming: FrameNaming, timezone: tzinfo) -> PurePosixPath:
    """The frame's path relative to the frames root, with ``.fits`` appended."""
    local = naming.exposure_start_utc.astimezone(timezone)
    values = {
        "TARGETNAME": naming.target_name or "NoTarget",
        "DATEMINUS12": night_date(naming.exposure_start_utc, timezone).isoformat(),
        "DATE": local.strftime("%Y-%m-%d"),
        "TIME": local.strftime("%H-%M-%S"),
        "DATETIME": local.strftime("%Y-%m-%d_%H-%M-%S"),
        "IMAGETYPE": naming.image_type,
        "FILTER": naming.filter_name or "NoFilter",
        "EXPOSURETIME": f"{naming.exposure_s:.2f}",
        "SENSORTEMP": _number(naming.sensor_temperature_c),
        "SETTEMP": _number(naming.set_point_c),
        "GAIN": "" if naming.gain is None else str(naming.gain),
        "OFFSET": "" if naming.offset is None else str(naming.offset),
        "BINNING": f"{naming.bin_x}x{naming.bin_y}",
        "FRAMENR": f"{naming.frame_number:04d}",
        "CAMERA": naming.camera_name or "",
        "READOUTMODE": "" if naming.readout_mode is None else str(naming.readout_mode),
    }
    parts = []
    for segment in validate_pattern(pattern).split("/"):
        text = _TOKEN.sub(lambda m: values[m.group(1)].replace("/", "_"), segment)
        parts.append(sanitise(text))
    parts[-1] += ".fits"
    return PurePosixPath(*parts)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"
