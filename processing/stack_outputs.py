"""Every file a stacking job writes, with its provenance, each written atomically:

- ``OUT/masters/<name>.fits``: a master combined in the job (cards say what it is; HISTORY
  the combination and every input with its SHA-256);
- ``OUT/<target>_<filter>.fits`` (float32; HISTORY: the masters, every stage's step with its
  parameters, every light integrated with its SHA-256 and weight), ``.xisf`` (the same
  keywords), ``.jpg`` (linked auto-STF) and the rejection maps ``<name>_rejection_low.fits``
  / ``_high.fits`` (rejected samples per pixel).

The stages say what they did as HISTORY lines; this module alone turns them into files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from processing.export import preview_jpeg
from processing.grouping import FrameInfo, LightGroup
from processing.io import (
    FitsCard,
    atomic_path,
    encode_fits,
    read_fits_header,
    safe_file_name,
    write_atomic,
    write_xisf,
)
from processing.stack_integrate import Integrated
from processing.stack_masters import BuiltMaster
from processing.stack_register import Registered
from processing.stacking import input_lines

OUTPUT_KINDS = ("fits", "xisf", "jpeg", "rejection_low", "rejection_high")

_G = TypeVar("_G", bound=np.generic)

_OPTICS_KEYWORDS = (
    "FOCALLEN",
    "XPIXSZ",
    "YPIXSZ",
    "RA",
    "DEC",
    "OBJCTRA",
    "OBJCTDEC",
    "INSTRUME",
    "TELESCOP",
    "SITELAT",
    "SITELONG",
)


class StackOutputs:
    """The files of one job under `out_dir`; `masters` maps each master's name to its file.
    Every write raises OSError when the file cannot be written."""

    def __init__(self, out_dir: Path, preview_size_px: int) -> None:
        self.out_dir = out_dir
        self.preview_size_px = preview_size_px
        self.masters: dict[str, Path] = {}

    def master(self, master: BuiltMaster) -> Path:
        """Write a master combined in the job as ``OUT/masters/<name>.fits``."""
        first = master.frames[0]
        cards: list[FitsCard] = [
            ("IMAGETYP", f"MASTER {master.kind}", "master calibration frame"),
            ("NOWLMSTR", True, "Nightowl master"),
            ("NCOMBINE", len(master.frames), "frames combined"),
            ("EXPTIME", master.exposure_s, "[s] exposure of the combined frames"),
            ("FILTER", first.filter_name, "filter"),
            ("XBINNING", first.binning, "binning"),
            ("YBINNING", first.binning, "binning"),
            ("GAIN", first.gain, "camera gain"),
            ("CCD-TEMP", first.temperature_c, "[C] sensor temperature"),
        ]
        name = master_name(master.kind, first)
        path = self.out_dir / "masters" / f"{name}.fits"
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, encode_fits(master.data, cards, master.history))
        self.masters[name] = path
        return path

    def group(
        self,
        group: LightGroup,
        steps: Sequence[str],
        registered: Registered,
        reference: Path,
        integrated: Integrated,
    ) -> dict[str, Path]:
        """Write a group's integrated image, rejection maps and preview; `steps` are the
        stages' HISTORY lines, `reference` the file whose grid the image is on. Returns
        the files by kind (`OUTPUT_KINDS`)."""
        history = [
            "Nightowl processing",
            *steps,
            *(
                line
                for r in registered.lights
                for line in input_lines(
                    r.light.frame.path, r.light.sha256, f"weight {r.weight:.4f}"
                )
            ),
        ]
        count = len(registered.lights)
        cards: list[FitsCard] = [
            ("IMAGETYP", "MASTER LIGHT", "integrated lights"),
            ("OBJECT", group.target, "target"),
            ("FILTER", group.filter_name, "filter"),
            ("EXPTIME", group.exposure_s, "[s] exposure of one light"),
            ("TOTEXP", group.exposure_s * count, "[s] total exposure integrated"),
            ("NCOMBINE", count, "lights integrated"),
            ("XBINNING", group.binning, "binning"),
            ("YBINNING", group.binning, "binning"),
            ("GAIN", group.gain, "camera gain"),
            ("SWCREATE", "Nightowl", "software that made the file"),
            *_per_output_pixel(optics_cards(reference), integrated.scale),
        ]
        name = safe_file_name(group.name)
        outputs = {
            "fits": self.out_dir / f"{name}.fits",
            "xisf": self.out_dir / f"{name}.xisf",
            "jpeg": self.out_dir / f"{name}.jpg",
            "rejection_low": self.out_dir / f"{name}_rejection_low.fits",
            "rejection_high": self.out_dir / f"{name}_rejection_high.fits",
        }
        image = integrated.image
        planar = _planar(image)
        write_atomic(outputs["fits"], encode_fits(planar, cards, history))
        low, high = _planar(integrated.low_count), _planar(integrated.high_count)
        write_atomic(outputs["rejection_low"], encode_fits(low, cards, ["low rejection"]))
        write_atomic(outputs["rejection_high"], encode_fits(high, cards, ["high rejection"]))
        with atomic_path(outputs["xisf"]) as temp:
            write_xisf(temp, planar, cards, history)
        write_atomic(outputs["jpeg"], preview_jpeg(_display(image), self.preview_size_px))
        return outputs


def master_name(kind: str, frame: FrameInfo) -> str:
    """The file stem of a master: kind, binning, exposure (darks), filter (flats), gain and
    temperature (darks), as a safe file name."""
    parts = [f"master_{kind.lower()}", f"bin{frame.binning}"]
    if kind in ("DARK", "DARKFLAT"):
        parts.append(f"{frame.exposure_s:g}s")
    if kind == "FLAT":
        parts.append(frame.filter_name or "nofilter")
    if frame.gain is not None:
        parts.append(f"gain{frame.gain:g}")
    if kind == "DARK" and frame.temperature_c is not None:
        parts.append(f"{frame.temperature_c:+.0f}C")
    return safe_file_name("_".join(parts))


def optics_cards(reference: Path) -> list[FitsCard]:
    """The reference light's optics and pointing (the master is on its pixel grid): what
    plate solving the master needs for its scale and a hint, and what a reader expects.
    Empty when the reference's header cannot be read."""
    try:
        _, header = read_fits_header(reference)
    except (OSError, ValueError):
        return []
    cards: list[FitsCard] = []
    for keyword in _OPTICS_KEYWORDS:
        value = header.get(keyword)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            cards.append((keyword, value, "of the reference light"))
    return cards


def _per_output_pixel(cards: list[FitsCard], scale: int) -> list[FitsCard]:
    """The reference's cards for an image `scale` times finer (drizzle): a pixel's size (and
    so the plate scale a solver derives from it) divided by `scale`."""
    if scale == 1:
        return cards
    return [
        (keyword, value / scale, f"[um] of the reference light / drizzle scale {scale}")
        if keyword in ("XPIXSZ", "YPIXSZ") and isinstance(value, (int, float))
        else (keyword, value, comment)
        for keyword, value, comment in cards
    ]


def _planar(stack: npt.NDArray[_G]) -> npt.NDArray[_G]:
    """``(y, x)`` for one plane, ``(c, y, x)`` as it is for colour."""
    return stack[0] if len(stack) == 1 else stack


def _display(image: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The image ``(c, y, x)`` as a preview's ``(y, x[, 3])`` in [0, 1]: NaN as 0, shifted
    so its minimum is at most 0, divided by its maximum."""
    preview = np.nan_to_num(np.moveaxis(image, 0, -1) if len(image) == 3 else image[0])
    preview = preview - np.float32(min(0.0, float(preview.min())))
    scale = np.float32(max(float(preview.max()), 1e-6))
    result: npt.NDArray[np.float32] = preview / scale
    return result
