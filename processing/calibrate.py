"""Calibration of lights with masters, and cosmetic correction of hot and cold pixels.

Calibrated = (L - D) / F_norm: the master dark D holds bias and dark current together (darks
match the lights' exposure and temperature), F_norm is the master flat normalised to mean 1
(`processing.masters.master_flat`), so a light keeps its level. With dark scaling the
bias-subtracted dark is scaled by the exposure ratio: L - B - (D - B) t_L / t_D, for darks of
another exposure. Everything is float32 ADU; inputs are never modified.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from processing.normalize import MAD_TO_SIGMA

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]
Frame = npt.NDArray[np.generic]

# Neighbours of a pixel (same colour on a colour filter array: twice as far), 8-connected.
_NEIGHBOUR_OFFSETS = np.array(
    [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.int64
)
# Robust sigma of a master dark from at most this many pixels: ~0.2 % precision.
_SIGMA_SAMPLES = 1 << 19


@dataclass(frozen=True, eq=False)
class CalibrationMasters:
    """The masters one light is calibrated with; any may be missing.

    - bias: master bias (ADU); needed for dark scaling, or alone when there is no dark.
    - dark: master dark (ADU, bias included), of exposure dark_exposure_s.
    - flat: master flat normalised to mean 1.
    """

    bias: F32 | None = None
    dark: F32 | None = None
    dark_exposure_s: float | None = None
    flat: F32 | None = None


@dataclass(frozen=True)
class CalibrationConfig:
    """Options of `calibrate`.

    - dark_scaling: scale the bias-subtracted dark by light / dark exposure (needs the bias,
      both exposures). Off by default: dark current is only linear in time at a constant
      temperature, and amp glow often is not.
    - min_flat: flat values below this count as this, so a dead pixel of the flat (0) does
      not turn into infinity; cosmetic correction repairs such pixels.
    """

    dark_scaling: bool = False
    min_flat: float = 0.01

    def __post_init__(self) -> None:
        if not self.min_flat > 0:
            raise ValueError(f"min_flat must be positive, got {self.min_flat}")


@dataclass(frozen=True)
class CosmeticConfig:
    """How defects are found in a master dark and repaired.

    - hot_sigma / cold_sigma: a pixel deviating from its local median by more than this many
      robust sigmas (1.4826 MAD of all deviations) is hot / cold. 5 keeps noise out (a few
      false defects per 10 MP of Gaussian noise) and finds anything a light would show.
    - cfa: the sensor has a colour filter array: compare and repair with same-colour pixels
      (two pixels apart) only.
    """

    hot_sigma: float = 5.0
    cold_sigma: float = 5.0
    cfa: bool = False

    def __post_init__(self) -> None:
        if self.hot_sigma <= 0 or self.cold_sigma <= 0:
            raise ValueError("hot_sigma and cold_sigma must be positive")


@dataclass(frozen=True, eq=False)
class DefectMap:
    """Hot and cold pixels of a sensor, as ``(y, x)`` boolean masks. Their union and its
    coordinates are found once per map: every light of a group is corrected with it."""

    hot: Mask
    cold: Mask

    @functools.cached_property
    def defects(self) -> Mask:
        mask: Mask = self.hot | self.cold
        return mask

    @functools.cached_property
    def coordinates(self) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """``(ys, xs)`` of the defects."""
        ys, xs = np.nonzero(self.defects)
        return ys, xs


def calibrate(
    light: Frame,
    masters: CalibrationMasters,
    *,
    exposure_s: float | None = None,
    config: CalibrationConfig = CalibrationConfig(),
) -> F32:
    """(L - D) / F_norm of a ``(y, x)`` light, float32 ADU.

    Without a dark the bias is subtracted; without a flat nothing is divided. `exposure_s`
    is the light's, needed for dark scaling. Raises ValueError for shapes that differ, or
    for dark scaling without a bias, a dark, or either exposure.
    """
    result = np.array(light, dtype=np.float32, copy=True)
    for name, master in (("bias", masters.bias), ("dark", masters.dark), ("flat", masters.flat)):
        if master is not None and master.shape != result.shape:
            raise ValueError(f"master {name} is {master.shape}, the light {result.shape}")
    if config.dark_scaling:
        if masters.bias is None or masters.dark is None:
            raise ValueError("dark scaling needs a master bias and a master dark")
        if not exposure_s or not masters.dark_exposure_s:
            raise ValueError("dark scaling needs the light's and the dark's exposure")
        ratio = np.float32(exposure_s / masters.dark_exposure_s)
        result -= masters.bias
        result -= (masters.dark - masters.bias) * ratio
    elif masters.dark is not None:
        result -= masters.dark
    elif masters.bias is not None:
        result -= masters.bias
    if masters.flat is not None:
        result /= np.maximum(masters.flat, np.float32(config.min_flat))
    return result


def find_defects(master_dark: Frame, config: CosmeticConfig = CosmeticConfig()) -> DefectMap:
    """Hot and cold pixels of a master dark: outliers from the local median by robust sigma.

    The local median (5 x 5, per colour plane on a CFA) follows amp glow and gradients, so
    only single pixels stand out. Raises ValueError when the dark is not 2-D (or, with a CFA,
    has an odd size).
    """
    dark = np.asarray(master_dark, dtype=np.float32)
    if dark.ndim != 2:
        raise ValueError(f"expected a 2-D master dark (y, x), got shape {dark.shape}")
    deviation = dark - _local_median(dark, config.cfa)
    sample = deviation.ravel()[:: max(1, dark.size // _SIGMA_SAMPLES)]
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(sample - np.median(sample))))
    if sigma == 0.0:
        # A noiseless (synthetic or clipped) dark: any deviation at all is a defect.
        sigma = float(np.finfo(np.float32).tiny)
    return DefectMap(
        hot=deviation > config.hot_sigma * sigma, cold=deviation < -config.cold_sigma * sigma
    )


def correct_defects(
    image: Frame, defects: DefectMap, config: CosmeticConfig = CosmeticConfig()
) -> F32:
    """A float32 copy of `image` with each defect replaced by the median of its neighbours.

    The 8 neighbours (same colour on a CFA) that are not defects themselves; a pixel whose
    neighbours are all defects gets the local 5 x 5 median. Vectorised over the defects.
    """
    result = np.array(image, dtype=np.float32, copy=True)
    mask = defects.defects
    if mask.shape != result.shape:
        raise ValueError(f"defect map is {mask.shape}, the image {result.shape}")
    ys, xs = defects.coordinates
    if len(ys) == 0:
        return result
    step = 2 if config.cfa else 1
    height, width = result.shape
    ny = ys[:, None] + step * _NEIGHBOUR_OFFSETS[None, :, 0]
    nx = xs[:, None] + step * _NEIGHBOUR_OFFSETS[None, :, 1]
    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    ny, nx = np.clip(ny, 0, height - 1), np.clip(nx, 0, width - 1)
    values = result[ny, nx]
    usable = inside & ~mask[ny, nx]
    values = np.where(usable, values, np.float32(np.nan))
    has_any = usable.any(axis=1)
    replacement = np.empty(len(ys), dtype=np.float32)
    if has_any.any():
        replacement[has_any] = np.nanmedian(values[has_any], axis=1)
    if not has_any.all():
        fallback = _local_median(result, config.cfa)
        replacement[~has_any] = fallback[ys[~has_any], xs[~has_any]]
    result[ys, xs] = replacement
    return result


def _local_median(image: F32, cfa: bool) -> F32:
    """5 x 5 median, per 2 x 2 colour plane on a CFA (OpenCV's medianBlur takes float32 up
    to 5 x 5)."""
    if not cfa:
        return np.asarray(cv2.medianBlur(np.ascontiguousarray(image), 5), dtype=np.float32)
    if image.shape[0] % 2 or image.shape[1] % 2:
        raise ValueError(f"a CFA frame has even sides, got {image.shape}")
    result = np.empty(image.shape, dtype=np.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            plane = np.ascontiguousarray(image[dy::2, dx::2])
            result[dy::2, dx::2] = cv2.medianBlur(plane, 5)
    return result
