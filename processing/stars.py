"""Star detection and per-frame quality (star count, HFR, FWHM, eccentricity, sky) with sep.

sep is the SExtractor engine as a library: a meshed background model, thresholded extraction
with deblending, then aperture measurements on the background-subtracted frame. Everything here
is in pixels and ADU; converting to arcseconds is the caller's job (`plate_scale_arcsec_px`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import sep

_SQRT_2LN2 = math.sqrt(2.0 * math.log(2.0))
# Photometry aperture in units of the isophotal semi-major axis a, as SExtractor and sep's own
# examples use: 6 a reaches past 3.5 sigma of a Gaussian even on faint stars, whose a shrinks.
_APERTURE_A = 6.0
# An object whose isophotal semi-major axis is above both of these is not a star (see
# `_extended`); a saturated bright star's halo stays below them.
_EXTENDED_MIN_A_PX = 25.0
_EXTENDED_A_TIMES_MEDIAN = 10.0
# Arcseconds per radian / 1000: um of pixel over mm of focal length.
_ARCSEC_PER_UM_PER_MM = 206.264806

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StarConfig:
    """How stars are found; the defaults suit 1-4 px stars on an amateur camera.

    - threshold_sigma: detection threshold in units of the global background RMS. 5 keeps noise
      peaks out of a few-megapixel frame; SExtractor's 1.5 is for deep catalogs, not culling.
    - min_area_px: pixels a detection must cover (sep's default); hot pixels and cosmic-ray hits
      are smaller.
    - max_stars: keep only this many, brightest first by isophotal flux, so a Milky Way field
      does not cost seconds of photometry; medians do not need more.
    - edge_margin_px: drop detections whose centroid lies this close to the border, where the
      star is cut off and its HFR and centroid are biased.
    - background_box_px: side of sep's background mesh boxes (sep's default 64); larger boxes
      follow large nebulae less, smaller ones follow gradients better.
    - deblend_nthresh, deblend_cont: SExtractor's deblending levels and minimum contrast (its
      defaults), which split close pairs without splitting a single star.
    """

    threshold_sigma: float = 5.0
    min_area_px: int = 5
    max_stars: int = 2000
    edge_margin_px: int = 8
    background_box_px: int = 64
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005

    def __post_init__(self) -> None:
        """Raise ValueError on settings sep would reject or that would find nothing."""
        if self.threshold_sigma <= 0:
            raise ValueError(f"threshold_sigma must be positive, got {self.threshold_sigma}")
        if self.min_area_px < 1 or self.max_stars < 1 or self.background_box_px < 1:
            raise ValueError("min_area_px, max_stars and background_box_px must be at least 1")
        if self.edge_margin_px < 0:
            raise ValueError(f"edge_margin_px must not be negative, got {self.edge_margin_px}")
        if self.deblend_nthresh < 1 or not 0.0 <= self.deblend_cont <= 1.0:
            raise ValueError("deblend_nthresh must be >= 1 and deblend_cont within [0, 1]")


@dataclass(frozen=True, eq=False)
class StarTable:
    """Detected stars as equal-length arrays, one entry per star, brightest first.

    - y, x: centroid, px, (0, 0) = centre of the first pixel. Windowed (sep.winpos, SExtractor's
      XWIN/YWIN) for isolated stars; the isophotal barycentre for deblended ones, because the
      window of a star with a close neighbour is pulled towards it.
    - flux: background-subtracted sum in a circle of 6 a (isophotal semi-major axis), ADU, with
      the pixels of other detections masked.
    - hfr_px: half-flux radius in that aperture (sep.flux_radius, frac 0.5), neighbours masked.
    - fwhm_px: 2 x hfr_px, the FWHM of a Gaussian with this HFR. Seeing-limited stars have
      wings (Moffat beta ~4.8), for which it reads ~14 % above a fitted FWHM, but the same on
      faint and bright stars. Not 2 sqrt(ln 2 (a^2 + b^2)) from sep's a, b: those are moments
      of the pixels above the detection isophote only, so they shrink with star brightness
      (a sigma 2 px star, FWHM 4.71 px, gives 4.4 px at 50,000 e- and 2.9 px at 10,000 e-).
    - eccentricity: sqrt(1 - b^2 / a^2) from the isophotal moments; truncating at an isophote
      shrinks a and b alike, so their ratio stays fair. 0 round; ~0.4 is noise on faint round
      stars; above ~0.6 trailing shows.
    - peak_adu: the brightest pixel of the star in the input frame, background included, to
      compare with the camera's saturation level.
    """

    y: FloatArray
    x: FloatArray
    flux: FloatArray
    hfr_px: FloatArray
    fwhm_px: FloatArray
    eccentricity: FloatArray
    peak_adu: FloatArray

    def __post_init__(self) -> None:
        """Raise ValueError when the columns differ in length."""
        columns = (self.x, self.flux, self.hfr_px, self.fwhm_px, self.eccentricity, self.peak_adu)
        lengths = {len(self.y), *(len(column) for column in columns)}
        if len(lengths) > 1:
            raise ValueError(f"StarTable columns differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class FrameQuality:
    """One frame's figures for acceptance and for the frames table.

    Star medians are None when no usable star was found. noise_adu is sep's global background
    RMS (sigma-clipped over the background mesh, so stars do not inflate it).
    """

    star_count: int
    hfr_px: float | None
    fwhm_px: float | None
    eccentricity: float | None
    background_adu: float
    noise_adu: float
    saturated_fraction: float


@dataclass(frozen=True, eq=False)
class _Extraction:
    """The float32 copy of a frame, its background-subtracted version and sep's results."""

    data: npt.NDArray[np.float32]
    subtracted: npt.NDArray[np.float32]
    background: sep.Background
    objects: npt.NDArray[np.void]
    segmap: npt.NDArray[np.int32]


def detect_stars(image: npt.NDArray[np.generic], config: StarConfig = StarConfig()) -> StarTable:
    """Find stars in a 2-D frame (y, x) of any numeric dtype; the input is never modified.

    Raises ValueError when `image` is not 2-D.
    """
    return _measure_stars(_extract(image, config), config)


def measure_frame(
    image: npt.NDArray[np.generic], *, saturation_adu: float, config: StarConfig = StarConfig()
) -> FrameQuality:
    """Star count, median HFR/FWHM/eccentricity, sky level and noise of a frame.

    Stars whose peak reaches `saturation_adu` count as stars but stay out of the medians: their
    clipped cores make them look wider than the seeing. Raises ValueError when `image` is not 2-D.
    """
    return measure_frame_stars(image, saturation_adu=saturation_adu, config=config)[0]


def measure_frame_stars(
    image: npt.NDArray[np.generic], *, saturation_adu: float, config: StarConfig = StarConfig()
) -> tuple[FrameQuality, StarTable]:
    """`measure_frame`'s figures and the stars they come from (brightest first), so a caller
    that keeps the star list (registration at capture time) does not detect them again."""
    extraction = _extract(image, config)
    stars = _measure_stars(extraction, config)
    unsaturated = stars.peak_adu < saturation_adu
    quality = FrameQuality(
        star_count=len(stars),
        hfr_px=_median_or_none(stars.hfr_px[unsaturated]),
        fwhm_px=_median_or_none(stars.fwhm_px[unsaturated]),
        eccentricity=_median_or_none(stars.eccentricity[unsaturated]),
        background_adu=float(extraction.background.globalback),
        noise_adu=float(extraction.background.globalrms),
        saturated_fraction=float(np.mean(extraction.data >= saturation_adu)),
    )
    return quality, stars


def plate_scale_arcsec_px(pixel_size_um: float, focal_length_mm: float, binning: int = 1) -> float:
    """Sky angle of one (binned) pixel, arcsec/px, to turn hfr_px or fwhm_px into arcseconds.

    Raises ValueError for a non-positive focal length, pixel size or binning.
    """
    if pixel_size_um <= 0 or focal_length_mm <= 0 or binning < 1:
        raise ValueError(
            f"need positive pixel size, focal length and binning, got {pixel_size_um} um, "
            f"{focal_length_mm} mm, bin {binning}"
        )
    return _ARCSEC_PER_UM_PER_MM * pixel_size_um * binning / focal_length_mm


def _extract(image: npt.NDArray[np.generic], config: StarConfig) -> _Extraction:
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D frame (y, x), got shape {image.shape}")
    # sep needs C-contiguous float32; a frame that is so already is used as it is (nothing
    # here writes to it: the background is subtracted from a copy).
    data = np.ascontiguousarray(image, dtype=np.float32)
    box = config.background_box_px
    background = sep.Background(data, bw=box, bh=box)
    # In place on a copy: no third frame-sized array for the background itself.
    subtracted = data.copy()
    background.subfrom(subtracted)
    objects, segmap = sep.extract(
        subtracted,
        config.threshold_sigma,
        err=background.globalrms,
        minarea=config.min_area_px,
        deblend_nthresh=config.deblend_nthresh,
        deblend_cont=config.deblend_cont,
        # With one noise figure for the whole frame the matched filter is the plain
        # convolution (the same objects, bit for bit), which costs 12 % less.
        filter_type="conv",
        segmentation_map=True,
    )
    return _Extraction(
        data=data, subtracted=subtracted, background=background, objects=objects, segmap=segmap
    )


def _measure_stars(extraction: _Extraction, config: StarConfig) -> StarTable:
    objects = extraction.objects
    height, width = extraction.data.shape
    margin = config.edge_margin_px
    inside = (
        (objects["x"] >= margin)
        & (objects["x"] <= width - 1 - margin)
        & (objects["y"] >= margin)
        & (objects["y"] <= height - 1 - margin)
    )
    candidates = np.flatnonzero(inside & ~_extended(objects))
    brightest_first = np.argsort(-objects["flux"][candidates], kind="stable")
    chosen = candidates[brightest_first[: config.max_stars]]
    flux = _aperture_flux(extraction, chosen)
    # A non-positive aperture sum means the background was overestimated there; such a star's
    # half-flux radius is meaningless, so it is dropped.
    positive = flux > 0
    chosen, flux = chosen[positive], flux[positive]

    stars = objects[chosen]
    x, y, a, b = stars["x"], stars["y"], stars["a"], stars["b"]
    hfr, _ = sep.flux_radius(
        extraction.subtracted,
        x,
        y,
        _APERTURE_A * a,
        0.5,
        normflux=flux,
        segmap=extraction.segmap,
        seg_id=_seg_id(chosen),
    )
    # sig = hfr / sqrt(2 ln 2) is a Gaussian's sigma, the window SExtractor uses for XWIN.
    x_win, y_win, win_flag = sep.winpos(extraction.subtracted, x, y, hfr / _SQRT_2LN2)
    windowed = ((stars["flag"] & sep.OBJ_MERGED) == 0) & (win_flag == 0)
    return StarTable(
        y=np.where(windowed, y_win, y),
        x=np.where(windowed, x_win, x),
        flux=flux,
        hfr_px=hfr,
        fwhm_px=2.0 * hfr,
        eccentricity=np.sqrt(1.0 - (b / a) ** 2),
        peak_adu=extraction.data[stars["ypeak"], stars["xpeak"]].astype(np.float64),
    )


def _extended(objects: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
    """Objects far larger than the stars: satellite and aircraft trails, galaxies, nebula
    knots. They are not stars, and their 6 a apertures would span most of the frame (a
    trail's a is hundreds of pixels: a fifth of a second per frame measuring it)."""
    if len(objects) == 0:
        return np.zeros(0, dtype=bool)
    a = objects["a"]
    limit = max(_EXTENDED_MIN_A_PX, _EXTENDED_A_TIMES_MEDIAN * float(np.median(a)))
    extended: npt.NDArray[np.bool_] = a > limit
    return extended


def _aperture_flux(extraction: _Extraction, chosen: npt.NDArray[np.intp]) -> FloatArray:
    """Background-subtracted sum within 6 a of each chosen object, other objects masked."""
    stars = extraction.objects[chosen]
    flux, _, _ = sep.sum_circle(
        extraction.subtracted,
        stars["x"],
        stars["y"],
        _APERTURE_A * stars["a"],
        segmap=extraction.segmap,
        seg_id=_seg_id(chosen),
    )
    return np.asarray(flux, dtype=np.float64)


def _seg_id(chosen: npt.NDArray[np.intp]) -> npt.NDArray[np.int32]:
    """Segmentation ids are 1-based object indices; a positive id masks all other objects."""
    return (chosen + 1).astype(np.int32)


def _median_or_none(values: FloatArray) -> float | None:
    return float(np.median(values)) if len(values) else None
