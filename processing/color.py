"""Background neutralisation and colour calibration of linear RGB images.

The two steps PixInsight users know as BackgroundNeutralization and
PhotometricColorCalibration, with our own parts:

Background neutralisation (`neutralize_background`) measures each channel's background as a
clipped median and adds a per-channel offset so every channel's background equals the MEAN of
the channel backgrounds. The mean (rather than the green level or the highest one) keeps the
overall brightness of the sky where it was; values are never clipped, so a few background
pixels of a channel that is lowered may go slightly negative, as they may after any
subtraction of a background.

Colour calibration (`estimate_color_gains`, then `apply_color_gains`) finds per-channel gains
(G = 1) from stars:

- Stars are found on the luminance (the mean of the channels) with `processing.stars`, measured
  in each channel with a circular aperture (3 HFR) and a local background annulus (sep), and
  dropped when any channel reaches `saturation` or falls below `min_snr`.
- Photometric: with a plate solution, the bundled Gaia catalog (Gaia DR3 to G ~10) is projected
  through the WCS and matched to the stars within `match_radius_px`. Each star's expected R/G
  and B/G come from its BP-RP colour: an effective temperature from the mean dwarf sequence of
  Pecaut & Mamajek (2013, ApJS 208, 9; table version 2019.3.22, Gaia DR2 BP-RP), interpolated
  linearly in log Teff between its B9V and M5V rows (BP-RP -0.12 .. 3.36, 10700 .. 3030 K;
  stars outside are not used), then a Planck blackbody counted in photons through the nominal
  box passbands `PASSBANDS_NM` (B 400-500, G 500-580, R 600-700 nm, as common RGB filter
  sets), relative to the white reference: the Sun, G2V (5770 K, BP-RP 0.823), which thus comes
  out neutral. For R and B, the measured ratio is fitted against the expected one by Siegel's
  repeated medians (`scipy.stats.siegelslopes`, robust to nearly half the stars being wrong:
  blends, variables, reddened giants) and the line is read at the white reference (expected
  ratio 1), as PixInsight evaluates its fit at the white reference's colour: the gain is one
  over that measured ratio. With a camera whose bands are the nominal ones the line passes
  through the origin and this equals one over its slope; the intercept absorbs the mismatch
  of real bands.
- Average star: without a plate solution, or with fewer than `min_stars` usable matches, the
  gains make the median star's R/G and B/G equal 1 (a white balance on the average star, as
  PixInsight's ColorCalibration with stars as the white reference). The G2V white reference of
  the photometric branch gives a blackbody ratio of exactly 1 too, so both branches agree on
  what white is; the average star of a field is usually a little redder than the Sun.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import sep
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from scipy import spatial, stats

from processing.catalog import load_gaia_stars
from processing.normalize import MAD_TO_SIGMA
from processing.stars import StarConfig, StarTable, detect_stars

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Image = npt.NDArray[np.floating]

# Above this many pixels a channel's background and noise are measured on a fixed
# pseudo-random sample: the median of half a million pixels has a standard error of
# 1.25 sigma / sqrt(n) ~ 0.002 sigma, at a fiftieth of the time on a 24-megapixel stack.
_MAX_BACKGROUND_SAMPLES = 500_000
_R, _G, _B = 0, 1, 2

# Mean dwarf sequence, Pecaut & Mamajek (2013), table version 2019.3.22: (BP-RP, Teff K) of
# B9V, A0V, A2V, A5V, A7V, F0V, F2V, F5V, F8V, G0V, G2V, G5V, G8V, K0V, K2V, K3V, K4V, K5V, K7V,
# M0V, M1V, M2V, M3V, M4V, M5V.
_SEQUENCE_BP_RP = np.array(
    [-0.120, -0.037, 0.068, 0.194, 0.263, 0.377, 0.490, 0.587, 0.694, 0.782, 0.823, 0.850,
     0.900, 0.98, 1.10, 1.21, 1.32, 1.45, 1.71, 1.84, 2.09, 2.25, 2.49, 2.95, 3.36]
)  # fmt: skip
_SEQUENCE_TEFF_K = np.array(
    [10700, 9700, 8840, 8080, 7800, 7220, 6810, 6510, 6170, 5920, 5770, 5660, 5490, 5280, 5040,
     4830, 4600, 4410, 4070, 3870, 3700, 3550, 3410, 3200, 3030], dtype=np.float64
)  # fmt: skip
BP_RP_RANGE = (float(_SEQUENCE_BP_RP[0]), float(_SEQUENCE_BP_RP[-1]))
"""The BP-RP colours the temperature relation covers; stars outside it are not used."""
WHITE_REFERENCE_TEFF_K = 5770.0
"""The Sun (G2V) in the same table: a star of this temperature calibrates to R = G = B."""
PASSBANDS_NM: Mapping[str, tuple[float, float]] = {
    "R": (600.0, 700.0),
    "G": (500.0, 580.0),
    "B": (400.0, 500.0),
}
"""Nominal box passbands (nm) of the camera's R, G and B channels for the expected colours."""

# hc / k in nm K, for the Planck function.
_HC_OVER_K_NM_K = 1.438777e7


@dataclass(frozen=True)
class NeutralizationConfig:
    """How the background of each channel is measured.

    - low_sigma, high_sigma: pixels from median - low_sigma x sigma to median + high_sigma x sigma
      count as background (sigma = 1.4826 MAD); the tighter upper bound sheds stars and nebula.
    - iterations: times the range is re-centred on the clipped pixels (each a median and a MAD).
    """

    low_sigma: float = 2.8
    high_sigma: float = 2.0
    iterations: int = 2

    def __post_init__(self) -> None:
        """Raise ValueError naming the field and its allowed range."""
        for name in ("low_sigma", "high_sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of sigmas, got {value}")
        if not 1 <= self.iterations <= 10:
            raise ValueError(f"iterations must be within 1..10, got {self.iterations}")


@dataclass(frozen=True)
class ColorCalibrationConfig:
    """How stars are chosen and measured for the colour gains.

    - min_stars: usable catalog matches the photometric fit needs; fewer and the average star
      colour is used instead.
    - match_radius_px: largest distance between a detected star and a catalog star projected
      through the WCS (a plate solution is good to well under a pixel; 3 px allows for
      distortion at the corners).
    - max_magnitude: faintest catalog G magnitude matched (None: the whole catalog, G ~10).
    - saturation: fraction of full scale at which a star's peak counts as saturated in a
      channel; such stars are dropped (their clipped cores have the wrong colour).
    - min_snr: signal-to-noise ratio every channel of a star needs (background-limited,
      from the channel's background noise over the aperture).
    - aperture_hfr: aperture radius in units of the star's half-flux radius (3 HFR is ~3.5 sigma
      of a Gaussian star; colour ratios do not need the whole flux, only the same part of it).
    - annulus: inner and outer radius of the local background annulus, in aperture radii.
    - stars: detection settings for the luminance.
    """

    min_stars: int = 20
    match_radius_px: float = 3.0
    max_magnitude: float | None = None
    saturation: float = 0.95
    min_snr: float = 20.0
    aperture_hfr: float = 3.0
    annulus: tuple[float, float] = (1.5, 2.5)
    stars: StarConfig = field(default_factory=StarConfig)

    def __post_init__(self) -> None:
        """Raise ValueError naming the field and its allowed range."""
        if self.min_stars < 2:
            raise ValueError(f"min_stars must be at least 2, got {self.min_stars}")
        if not (math.isfinite(self.match_radius_px) and self.match_radius_px > 0):
            raise ValueError(f"match_radius_px must be positive, got {self.match_radius_px}")
        if self.max_magnitude is not None and not math.isfinite(self.max_magnitude):
            raise ValueError(f"max_magnitude must be finite or None, got {self.max_magnitude}")
        if not 0.0 < self.saturation <= 1.0:
            raise ValueError(f"saturation must be within (0, 1], got {self.saturation}")
        if not (math.isfinite(self.min_snr) and self.min_snr >= 0):
            raise ValueError(f"min_snr must be >= 0, got {self.min_snr}")
        if not (math.isfinite(self.aperture_hfr) and self.aperture_hfr > 0):
            raise ValueError(f"aperture_hfr must be positive, got {self.aperture_hfr}")
        inner, outer = self.annulus
        if not 1.0 <= inner < outer:
            raise ValueError(f"annulus must satisfy 1 <= inner < outer, got {self.annulus}")


Method = Literal["photometric", "average star"]


@dataclass(frozen=True)
class ColorCalibration:
    """Gains to multiply the R, G, B channels by (G = 1) and how they were found.

    - stars_used: stars behind the gains (catalog matches, or stars averaged).
    - residual: robust scatter (1.4826 MAD) of the per-star ratio after calibration, as a
      fraction, the larger of R/G and B/G. Photometric: measured over expected colour, the
      accuracy of one star; average star: the spread of the stars' own colours. NaN without
      stars.
    - note: one line for the user, e.g. "photometric: 143 Gaia stars, residual 2.1 %".
    """

    gains: tuple[float, float, float]
    method: Method
    stars_used: int
    residual: float
    note: str


@dataclass(frozen=True, eq=False)
class _Photometry:
    """Usable stars: positions (px) and background-subtracted channel fluxes (n, 3)."""

    x: F64
    y: F64
    flux: F64


def background_levels(image: Image, config: NeutralizationConfig | None = None) -> F64:
    """Each channel's background level (same units as `image`), shape (c,).

    A median of the pixels within the background range around it, re-centred
    `config.iterations` times; non-finite pixels are ignored. Raises ValueError for an image
    not shaped (y, x, 1|3) or a channel without finite pixels.
    """
    config = config or NeutralizationConfig()
    _check_image(image)
    levels = np.empty(image.shape[2], dtype=np.float64)
    for channel in range(image.shape[2]):
        values = _background_sample(image[..., channel])
        if values.size == 0:
            raise ValueError(f"channel {channel} holds no finite pixels")
        levels[channel] = _clipped_median(values, config)
    return levels


def neutralize_background(image: Image, config: NeutralizationConfig | None = None) -> F32:
    """The image with each channel offset so its background equals the mean background level.

    A mono image comes back unchanged (as float32). Nothing is clipped. Raises ValueError like
    `background_levels`.
    """
    levels = background_levels(image, config)
    offsets = (levels.mean() - levels).astype(np.float32)
    out: F32 = image.astype(np.float32) + offsets
    log.debug("background levels %s, offsets %s", levels, offsets)
    return out


def color_temperature_k(bp_rp: npt.ArrayLike) -> F64:
    """Effective temperature (K) of a star of Gaia colour BP-RP, NaN outside `BP_RP_RANGE`.

    Linear in log Teff between the rows of Pecaut & Mamajek's mean dwarf sequence.
    """
    colour = np.asarray(bp_rp, dtype=np.float64)
    log_teff = np.interp(colour, _SEQUENCE_BP_RP, np.log10(_SEQUENCE_TEFF_K))
    inside = (colour >= BP_RP_RANGE[0]) & (colour <= BP_RP_RANGE[1])
    teff: F64 = np.where(inside, 10.0**log_teff, np.nan)
    return teff


def blackbody_ratios(teff_k: npt.ArrayLike) -> tuple[F64, F64]:
    """(R/G, B/G) photon counts of a blackbody through `PASSBANDS_NM`, not normalised."""
    temperature = np.atleast_1d(np.asarray(teff_k, dtype=np.float64))
    wavelength = np.arange(400.0, 700.5, 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        exponent = _HC_OVER_K_NM_K / (wavelength[None, :] * temperature[:, None])
        # Photons per unit wavelength: the Planck energy density over the photon energy, ~ 1/l^4.
        photons = wavelength[None, :] ** -4 / np.expm1(exponent)
    counts = {}
    for band, (low, high) in PASSBANDS_NM.items():
        inside = (wavelength >= low) & (wavelength <= high)
        counts[band] = np.trapezoid(photons[:, inside], wavelength[inside], axis=1)
    shape = np.shape(teff_k)
    r_over_g: F64 = (counts["R"] / counts["G"]).reshape(shape)
    b_over_g: F64 = (counts["B"] / counts["G"]).reshape(shape)
    return r_over_g, b_over_g


def expected_channel_ratios(bp_rp: npt.ArrayLike) -> tuple[F64, F64]:
    """Expected (R/G, B/G) of a star of colour BP-RP once calibrated: 1 for a G2V star.

    The star's blackbody ratios over those of the white reference; NaN outside `BP_RP_RANGE`.
    """
    r_over_g, b_over_g = blackbody_ratios(color_temperature_k(bp_rp))
    white_r, white_b = blackbody_ratios(WHITE_REFERENCE_TEFF_K)
    return r_over_g / white_r, b_over_g / white_b


def estimate_color_gains(
    image: Image,
    config: ColorCalibrationConfig | None = None,
    *,
    wcs: WCS | None,
    stars: StarTable | None = None,
    catalog: npt.NDArray[np.void] | None = None,
) -> ColorCalibration:
    """Channel gains that calibrate the colours of a linear RGB image (y, x, 3), background
    neutralised or not (each star has its own local background).

    `wcs` is the image's plate solution (None: white balance on the average star). `stars`
    are the image's stars if already detected on its luminance; `catalog` the array of
    `processing.catalog.load_gaia_stars`, loaded here when needed and not given. Raises
    ValueError for an image that is not (y, x, 3).
    """
    config = config or ColorCalibrationConfig()
    _check_image(image)
    if image.shape[2] != 3:
        raise ValueError(f"colour calibration needs an RGB image (y, x, 3), got {image.shape}")
    if stars is None:
        luminance: F32 = np.asarray(np.mean(image, axis=2, dtype=np.float64), dtype=np.float32)
        stars = detect_stars(luminance, config.stars)
    photometry = _photometry(image, stars, config)
    if wcs is None:
        return _average_star(photometry, "no plate solution")
    if catalog is None:
        catalog = load_gaia_stars()
    star_index, r_expected, b_expected = _match(photometry, catalog, wcs, image.shape, config)
    if len(star_index) < config.min_stars:
        reason = f"{len(star_index)} Gaia stars matched, {config.min_stars} needed"
        return _average_star(photometry, reason)
    flux = photometry.flux[star_index]
    gains, residuals = [1.0, 1.0, 1.0], []
    for channel, expected in ((_R, r_expected), (_B, b_expected)):
        measured = flux[:, channel] / flux[:, _G]
        fit = stats.siegelslopes(measured, expected)
        white = float(fit.intercept + fit.slope)
        if not (math.isfinite(white) and white > 0):
            reason = f"the photometric fit gave a measured white of {white:.3g}"
            return _average_star(photometry, reason)
        gains[channel] = 1.0 / white
        residuals.append(_robust_scatter(measured * gains[channel] / expected))
    residual = max(residuals)
    note = f"photometric: {len(star_index)} Gaia stars, residual {100 * residual:.1f} %"
    log.info("colour calibration %s; gains R %.4f B %.4f", note, gains[_R], gains[_B])
    return ColorCalibration(
        gains=(gains[0], gains[1], gains[2]),
        method="photometric",
        stars_used=len(star_index),
        residual=residual,
        note=note,
    )


def apply_color_gains(image: Image, calibration: ColorCalibration) -> F32:
    """The image with each channel multiplied by its gain (float32). Raises ValueError for an
    image that is not (y, x, 3)."""
    _check_image(image)
    if image.shape[2] != 3:
        raise ValueError(f"colour gains apply to an RGB image (y, x, 3), got {image.shape}")
    gains = np.asarray(calibration.gains, dtype=np.float32)
    out: F32 = image.astype(np.float32) * gains
    return out


_WCS_KEYWORDS = (
    "WCSAXES", "CTYPE1", "CTYPE2", "CUNIT1", "CUNIT2", "RADESYS", "EQUINOX",
    "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
    "CDELT1", "CDELT2", "CROTA2", "PC1_1", "PC1_2", "PC2_1", "PC2_2",
)  # fmt: skip


def wcs_from_header(header: Mapping[str, object]) -> WCS | None:
    """The celestial WCS of a frame's header (the cards `processing.solve.Solution.fits_cards`
    writes, or any CD / CDELT(+PC, CROTA2) FITS WCS), or None when it has none.

    A header whose WCS keywords are present but unreadable is logged as a warning and gives
    None as well, so colour calibration falls back instead of failing.
    """
    ctype1, ctype2 = header.get("CTYPE1"), header.get("CTYPE2")
    if not (isinstance(ctype1, str) and isinstance(ctype2, str)):
        return None
    if not (ctype1.upper().startswith("RA") and ctype2.upper().startswith("DEC")):
        return None
    if any(header.get(key) is None for key in ("CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2")):
        return None
    has_cd = all(header.get(key) is not None for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"))
    has_cdelt = all(header.get(key) is not None for key in ("CDELT1", "CDELT2"))
    if not (has_cd or has_cdelt):
        return None
    cards = fits.Header()
    for key in _WCS_KEYWORDS:
        value = header.get(key)
        if value is not None:
            cards[key] = value
    try:
        with warnings.catch_warnings():
            # Fixes astropy applies to odd values are reported through the failure below.
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(cards, naxis=2)
    except Exception as e:  # astropy raises several unrelated types for a bad WCS
        log.warning("the header's WCS cannot be read (%s): treated as unsolved", e)
        return None
    if not wcs.has_celestial:
        return None
    return wcs


def _check_image(image: Image) -> None:
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"expected an image shaped (y, x, 1) or (y, x, 3), got {image.shape}")


def _background_sample(channel: Image) -> F64:
    values = channel.ravel()
    if values.size > _MAX_BACKGROUND_SAMPLES:
        rng = np.random.default_rng(0)
        values = values[rng.integers(0, values.size, _MAX_BACKGROUND_SAMPLES)]
    as_float = values.astype(np.float64)
    finite: F64 = as_float[np.isfinite(as_float)]
    return finite


def _clipped_median(values: F64, config: NeutralizationConfig) -> float:
    median = float(np.median(values))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(values - median)))
    for _ in range(config.iterations):
        if sigma == 0.0:
            break
        low, high = median - config.low_sigma * sigma, median + config.high_sigma * sigma
        kept = values[(values >= low) & (values <= high)]
        if kept.size == 0:
            break
        median = float(np.median(kept))
        sigma = MAD_TO_SIGMA * float(np.median(np.abs(kept - median)))
    return median


def _robust_scatter(values: F64) -> float:
    if len(values) < 2:
        return math.nan
    return MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def _photometry(image: Image, stars: StarTable, config: ColorCalibrationConfig) -> _Photometry:
    """Aperture fluxes of the stars in each channel; saturated, faint and cut-off stars dropped."""
    height, width = image.shape[:2]
    x, y = np.asarray(stars.x, dtype=np.float64), np.asarray(stars.y, dtype=np.float64)
    radius = config.aperture_hfr * np.maximum(np.asarray(stars.hfr_px, dtype=np.float64), 0.5)
    inner, outer = config.annulus[0] * radius, config.annulus[1] * radius
    usable = np.isfinite(x) & np.isfinite(y) & np.isfinite(radius)
    # The whole annulus must lie on the image, or the local background is lopsided.
    usable &= (x - outer >= 0) & (x + outer <= width - 1)
    usable &= (y - outer >= 0) & (y + outer <= height - 1)
    x, y, radius, inner, outer = x[usable], y[usable], radius[usable], inner[usable], outer[usable]
    flux = np.empty((len(x), 3), dtype=np.float64)
    keep = np.ones(len(x), dtype=bool)
    for channel in range(3):
        data = np.array(image[..., channel], dtype=np.float32, order="C", copy=True)
        noise = _robust_scatter(_background_sample(data))
        if len(x):
            total, _, flags = sep.sum_circle(data, x, y, radius, bkgann=(inner, outer))
            flux[:, channel] = total
            keep &= flags == 0
            snr = total / (noise * np.sqrt(np.pi) * radius) if noise > 0 else np.inf
            keep &= (total > 0) & (snr >= config.min_snr)
        keep &= _peaks(data, x, y, radius) < config.saturation
    return _Photometry(x=x[keep], y=y[keep], flux=flux[keep])


def _peaks(data: F32, x: F64, y: F64, radius: F64) -> F64:
    """The brightest pixel within each star's aperture box (NaN pixels count as saturated)."""
    height, width = data.shape
    peaks = np.empty(len(x), dtype=np.float64)
    for i, (cx, cy, r) in enumerate(zip(x, y, radius, strict=True)):
        reach = math.ceil(r)
        y0, y1 = max(0, round(cy) - reach), min(height, round(cy) + reach + 1)
        x0, x1 = max(0, round(cx) - reach), min(width, round(cx) + reach + 1)
        box = data[y0:y1, x0:x1]
        peaks[i] = np.inf if not np.isfinite(box).all() else float(box.max())
    return peaks


def _match(
    photometry: _Photometry,
    catalog: npt.NDArray[np.void],
    wcs: WCS,
    shape: tuple[int, ...],
    config: ColorCalibrationConfig,
) -> tuple[npt.NDArray[np.intp], F64, F64]:
    """Stars matched one-to-one to catalog stars with a usable colour: the stars' indices and
    their expected R/G and B/G."""
    empty = np.empty(0, dtype=np.intp), np.empty(0), np.empty(0)
    if len(photometry.x) == 0:
        return empty
    height, width = shape[:2]
    candidates = _catalog_in_field(catalog, wcs, height, width)
    bp_rp = candidates["bp_mag"].astype(np.float64) - candidates["rp_mag"].astype(np.float64)
    usable = np.isfinite(bp_rp) & (bp_rp >= BP_RP_RANGE[0]) & (bp_rp <= BP_RP_RANGE[1])
    if config.max_magnitude is not None:
        usable &= candidates["g_mag"] <= config.max_magnitude
    candidates, bp_rp = candidates[usable], bp_rp[usable]
    if len(candidates) == 0:
        return empty
    cat_x, cat_y = wcs.world_to_pixel_values(candidates["ra_deg"], candidates["dec_deg"])
    cat_xy = np.column_stack([np.asarray(cat_x, np.float64), np.asarray(cat_y, np.float64)])
    tree = spatial.cKDTree(np.column_stack([photometry.x, photometry.y]))
    distance, nearest = tree.query(cat_xy, distance_upper_bound=config.match_radius_px)
    matched = np.isfinite(distance)
    # A star claimed by two catalog stars is a blend whose colour is neither's: dropped.
    claims = np.bincount(nearest[matched], minlength=len(photometry.x))
    matched &= claims[np.minimum(nearest, len(photometry.x) - 1)] == 1
    star_index = nearest[matched].astype(np.intp)
    r_expected, b_expected = expected_channel_ratios(bp_rp[matched])
    return star_index, r_expected, b_expected


def _catalog_in_field(
    catalog: npt.NDArray[np.void], wcs: WCS, height: int, width: int
) -> npt.NDArray[np.void]:
    """Catalog rows within the circle around the frame's centre that reaches its corners."""
    corners_x = np.array([(width - 1) / 2, 0.0, width - 1.0, 0.0, width - 1.0])
    corners_y = np.array([(height - 1) / 2, 0.0, 0.0, height - 1.0, height - 1.0])
    ra, dec = wcs.pixel_to_world_values(corners_x, corners_y)
    vectors = _unit_vectors(np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    centre = vectors[0]
    reach = math.acos(min(1.0, float(np.min(vectors[1:] @ centre))))
    # 5 % margin: a distorted field reaches a little beyond the corners' circle.
    cos_reach = math.cos(min(math.pi / 2, 1.05 * reach))
    # A band of declination first: a cheap cut that leaves a few percent of the sky.
    reach_deg = math.degrees(math.acos(cos_reach))
    band = catalog[np.abs(catalog["dec_deg"] - float(dec[0])) <= reach_deg]
    stars = _unit_vectors(band["ra_deg"], band["dec_deg"])
    inside: npt.NDArray[np.void] = band[stars @ centre >= cos_reach]
    return inside


def _unit_vectors(ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike) -> F64:
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    vectors: F64 = np.column_stack(
        [np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]
    )
    return vectors


def _average_star(photometry: _Photometry, reason: str) -> ColorCalibration:
    """Gains that make the median star white, with `reason` for not calibrating photometrically."""
    count = len(photometry.x)
    if count == 0:
        return ColorCalibration(
            gains=(1.0, 1.0, 1.0),
            method="average star",
            stars_used=0,
            residual=math.nan,
            note=f"{reason}: no usable stars, colours left as they are",
        )
    flux = photometry.flux
    r_over_g, b_over_g = flux[:, _R] / flux[:, _G], flux[:, _B] / flux[:, _G]
    gain_r, gain_b = 1.0 / float(np.median(r_over_g)), 1.0 / float(np.median(b_over_g))
    residual = max(_robust_scatter(r_over_g * gain_r), _robust_scatter(b_over_g * gain_b))
    note = f"{reason}: white balance on the average star colour of {count} stars"
    log.info("colour calibration %s; gains R %.4f B %.4f", note, gain_r, gain_b)
    return ColorCalibration(
        gains=(gain_r, 1.0, gain_b),
        method="average star",
        stars_used=count,
        residual=residual,
        note=note,
    )
