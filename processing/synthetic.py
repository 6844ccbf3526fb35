"""Seeded synthetic frames with known truth, for tests and benchmarks of the processing chain.

A `SensorTruth` holds a camera's fixed patterns (bias with column structure, dark current with
hot pixels, cold pixels, a flat field of vignetting, dust motes and pixel response
non-uniformity); a scene is rendered in photo-electrons per frame: Gaussian stars integrated
over each pixel at exactly known positions, a sky with a gradient, a faint nebula fixed to the
sky; frames move by known dithers (shift + rotation) and may carry satellite trails and cosmic
rays with their masks. Frames come out as a camera writes them: uint16 ADU with Poisson and
read noise. It lives in `processing` rather than `tests` so that the benchmarks, which are
not a package, can generate the same data.

Transforms are 3 x 3 matrices acting on homogeneous ``(y, x, 1)`` column vectors and map
reference (sky) pixel coordinates to frame pixel coordinates; (0, 0) is the centre of the
first pixel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS
from scipy import special

from processing.catalog import load_gaia_stars
from processing.color import BP_RP_RANGE, expected_channel_ratios
from processing.io import FitsCard, encode_fits

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
U16 = npt.NDArray[np.uint16]
Mask = npt.NDArray[np.bool_]

_FULL_SCALE_ADU = 65535
# Star stamps reach 6 sigma: beyond it less than 1e-8 of the flux is lost.
_STAMP_SIGMAS = 6.0


@dataclass(frozen=True)
class SensorModel:
    """A camera's fixed patterns and noise, drawn from `seed`.

    - gain_e_per_adu, bias_adu, read_noise_e: conversion, offset, read noise.
    - bias_column_rms_adu: rms of a per-column bias offset (CMOS column pattern).
    - dark_current_e_s: mean dark current; hot_pixel_fraction of pixels get a rate drawn
      log-uniformly from hot_pixel_e_s instead.
    - cold_pixel_fraction: pixels reading cold_pixel_offset_adu below the bias in every
      frame, with a tenth of the normal response.
    - vignetting: fractional illumination lost in the corners (radial, quadratic in r^2).
    - dust_motes / dust_depth: ring-shaped shadows (out-of-focus dust) with this peak loss.
    - prnu: rms pixel response non-uniformity.
    """

    shape: tuple[int, int] = (256, 320)
    gain_e_per_adu: float = 1.0
    bias_adu: float = 500.0
    bias_column_rms_adu: float = 2.0
    read_noise_e: float = 5.0
    dark_current_e_s: float = 0.02
    hot_pixel_fraction: float = 5e-4
    hot_pixel_e_s: tuple[float, float] = (2.0, 50.0)
    cold_pixel_fraction: float = 1e-4
    cold_pixel_offset_adu: float = 100.0
    vignetting: float = 0.3
    dust_motes: int = 2
    dust_depth: float = 0.08
    prnu: float = 0.005
    seed: int = 0


@dataclass(frozen=True, eq=False)
class SensorTruth:
    """The fixed patterns of one sensor: what calibration must recover.

    flat is the relative response (mean 1 over the frame): vignetting x dust x PRNU, and a
    tenth at cold pixels.
    """

    model: SensorModel
    bias_adu: F32
    dark_e_s: F32
    flat: F32
    vignetting: F32
    hot: Mask
    cold: Mask

    @property
    def shape(self) -> tuple[int, int]:
        return self.model.shape


@dataclass(frozen=True, eq=False)
class StarField:
    """Stars in reference pixel coordinates ``(y, x)`` with total fluxes in e- per frame."""

    yx: F64
    flux_e: F64

    def __len__(self) -> int:
        return len(self.yx)


@dataclass(frozen=True)
class Nebula:
    """A faint diffuse source fixed to the sky: a sum of elliptical Gaussians (reference px)."""

    centers_yx: tuple[tuple[float, float], ...]
    sigmas_px: tuple[float, ...]
    peaks_e: tuple[float, ...]


def sensor_truth(model: SensorModel) -> SensorTruth:
    """Draw the fixed patterns of `model` (deterministic in model.seed)."""
    rng = np.random.default_rng(model.seed)
    height, width = model.shape
    column = rng.normal(0.0, model.bias_column_rms_adu, width)
    bias = np.broadcast_to(model.bias_adu + column, model.shape).astype(np.float32)
    n_pixels = height * width
    dark = np.full(n_pixels, model.dark_current_e_s)
    hot = np.zeros(n_pixels, dtype=bool)
    cold = np.zeros(n_pixels, dtype=bool)
    chosen = rng.permutation(n_pixels)
    n_hot = round(model.hot_pixel_fraction * n_pixels)
    n_cold = round(model.cold_pixel_fraction * n_pixels)
    hot[chosen[:n_hot]] = True
    cold[chosen[n_hot : n_hot + n_cold]] = True
    low, high = model.hot_pixel_e_s
    dark[hot] = np.exp(rng.uniform(math.log(low), math.log(high), n_hot))
    vignetting = vignetting_map(model.shape, model.vignetting)
    flat = vignetting * dust_map(model.shape, rng, model.dust_motes, model.dust_depth)
    flat *= 1.0 + rng.normal(0.0, model.prnu, model.shape)
    flat = flat.ravel()
    flat[cold] *= 0.1
    flat /= flat.mean()
    bias = bias.ravel().copy()
    bias[cold] -= model.cold_pixel_offset_adu
    return SensorTruth(
        model=model,
        bias_adu=bias.reshape(model.shape),
        dark_e_s=dark.reshape(model.shape).astype(np.float32),
        flat=flat.reshape(model.shape).astype(np.float32),
        vignetting=vignetting.astype(np.float32),
        hot=hot.reshape(model.shape),
        cold=cold.reshape(model.shape),
    )


def vignetting_map(shape: tuple[int, int], loss_at_corner: float) -> F64:
    """Relative illumination: 1 at the centre, 1 - loss_at_corner in the corners.

    The loss grows as 0.6 r^2 + 0.4 r^4 (r = 1 at a corner), the shape of a cos^4 falloff.
    """
    y, x = _centred_grid(shape)
    r2 = (y * y + x * x) / (((shape[0] - 1) / 2) ** 2 + ((shape[1] - 1) / 2) ** 2)
    profile: F64 = 1.0 - loss_at_corner * (0.6 * r2 + 0.4 * r2 * r2)
    return profile


def dust_map(shape: tuple[int, int], rng: np.random.Generator, motes: int, depth: float) -> F64:
    """Out-of-focus dust shadows: soft rings 8-20 px in radius with up to `depth` loss."""
    height, width = shape
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    shadow = np.ones(shape)
    for _ in range(motes):
        radius = rng.uniform(8.0, 20.0)
        cy = rng.uniform(radius, height - radius)
        cx = rng.uniform(radius, width - radius)
        r = np.hypot(y - cy, x - cx)
        ring = np.exp(-0.5 * ((r - 0.7 * radius) / (0.25 * radius)) ** 2)
        core = np.exp(-0.5 * (r / (0.5 * radius)) ** 2)
        shadow *= 1.0 - depth * np.maximum(ring, 0.6 * core)
    return shadow


def random_star_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    count: int,
    flux_e: tuple[float, float] = (5e3, 5e5),
    margin_px: float = 0.0,
) -> StarField:
    """`count` stars uniform over the frame (inside `margin_px`), fluxes log-uniform."""
    height, width = shape
    y = rng.uniform(margin_px, height - 1 - margin_px, count)
    x = rng.uniform(margin_px, width - 1 - margin_px, count)
    flux = np.exp(rng.uniform(math.log(flux_e[0]), math.log(flux_e[1]), count))
    return StarField(yx=np.column_stack([y, x]), flux_e=flux)


def dither(shape: tuple[int, int], shift_yx: tuple[float, float], rotation_deg: float = 0.0) -> F64:
    """Reference -> frame transform: rotation about the frame centre, then a shift (px).

    The rotation turns +x towards +y (clockwise on a screen whose y axis points down).
    """
    cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
    angle = math.radians(rotation_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    # In (y, x) order: y' = sin x + cos y, x' = cos x - sin y about the centre.
    rotation = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    to_origin = np.array([[1.0, 0.0, -cy], [0.0, 1.0, -cx], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cy + shift_yx[0]], [0.0, 1.0, cx + shift_yx[1]], [0, 0, 1.0]])
    matrix: F64 = back @ rotation @ to_origin
    return matrix


def apply_transform(matrix: F64, yx: F64) -> F64:
    """Points ``(n, 2)`` as ``(y, x)`` mapped by a 3 x 3 homogeneous transform."""
    homogeneous = np.column_stack([yx, np.ones(len(yx))]) @ matrix.T
    mapped: F64 = homogeneous[:, :2] / homogeneous[:, 2:3]
    return mapped


def render_stars(
    shape: tuple[int, int], yx: F64, flux_e: F64, sigma_px: float, out: F64 | None = None
) -> F64:
    """Circular Gaussian stars integrated exactly over each pixel, added to `out` (e-).

    Integrating the profile over the pixel (not sampling it at the centre) keeps the
    intensity-weighted centroid of the pixels at the true position.
    """
    image = np.zeros(shape) if out is None else out
    height, width = shape
    half = math.ceil(_STAMP_SIGMAS * sigma_px)
    scale = 1.0 / (sigma_px * math.sqrt(2.0))
    for (y, x), flux in zip(yx, flux_e, strict=True):
        y0, y1 = max(0, math.floor(y) - half), min(height, math.floor(y) + half + 2)
        x0, x1 = max(0, math.floor(x) - half), min(width, math.floor(x) + half + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        edges_y = (np.arange(y0, y1 + 1) - 0.5 - y) * scale
        edges_x = (np.arange(x0, x1 + 1) - 0.5 - x) * scale
        profile_y = 0.5 * np.diff(special.erf(edges_y))
        profile_x = 0.5 * np.diff(special.erf(edges_x))
        image[y0:y1, x0:x1] += flux * np.outer(profile_y, profile_x)
    return image


def reference_coordinates(shape: tuple[int, int], transform: F64) -> tuple[F64, F64]:
    """Reference (sky) coordinates (y, x) of every pixel of a frame, for an affine
    reference -> frame transform."""
    height, width = shape
    inverse = np.linalg.inv(transform)
    fy, fx = np.mgrid[0:height, 0:width].astype(np.float64)
    ry = inverse[0, 0] * fy + inverse[0, 1] * fx + inverse[0, 2]
    rx = inverse[1, 0] * fy + inverse[1, 1] * fx + inverse[1, 2]
    return ry, rx


def render_nebula(shape: tuple[int, int], nebula: Nebula, transform: F64) -> F64:
    """The nebula's e- per pixel in a frame whose reference -> frame transform is given."""
    ry, rx = reference_coordinates(shape, transform)
    image = np.zeros(shape)
    for (cy, cx), sigma, peak in zip(
        nebula.centers_yx, nebula.sigmas_px, nebula.peaks_e, strict=True
    ):
        image += peak * np.exp(-0.5 * ((ry - cy) ** 2 + (rx - cx) ** 2) / sigma**2)
    return image


def sky_gradient(
    shape: tuple[int, int],
    level_e: float,
    slope_yx: tuple[float, float],
    transform: F64 | None = None,
) -> F64:
    """A planar sky: `level_e` at the reference centre, changing by slope x level across the
    reference frame. With `transform` (reference -> frame) the plane is fixed to the sky, as
    light pollution is over a dither, so a registered stack's background is known exactly."""
    height, width = shape
    if transform is None:
        y, x = _centred_grid(shape)
    else:
        ry, rx = reference_coordinates(shape, transform)
        y, x = ry - (height - 1) / 2, rx - (width - 1) / 2
    plane: F64 = level_e * (1.0 + slope_yx[0] * y / height + slope_yx[1] * x / width)
    return plane


def satellite_trail(
    shape: tuple[int, int], rng: np.random.Generator, peak_e: float, width_px: float = 1.5
) -> tuple[F64, Mask]:
    """A straight trail across the frame (e-) and the pixels it raises above 1 % of its peak."""
    height, width = shape
    angle = rng.uniform(0.0, math.pi)
    cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    distance = np.abs((y - cy) * math.cos(angle) - (x - cx) * math.sin(angle))
    trail = peak_e * np.exp(-0.5 * (distance / width_px) ** 2)
    return trail, trail > 0.01 * peak_e


def cosmic_rays(
    shape: tuple[int, int], rng: np.random.Generator, count: int, peak_e: tuple[float, float]
) -> tuple[F64, Mask]:
    """Cosmic-ray hits: single pixels or 2-4 pixel streaks (e-), and their mask."""
    height, width = shape
    hits = np.zeros(shape)
    for _ in range(count):
        y, x = int(rng.integers(0, height)), int(rng.integers(0, width))
        length = int(rng.integers(1, 5))
        dy, dx = (0, 1) if rng.random() < 0.5 else (1, 0)
        energy = rng.uniform(*peak_e)
        for step in range(length):
            hits[min(y + step * dy, height - 1), min(x + step * dx, width - 1)] += energy
    return hits, hits > 0


def expose(
    truth: SensorTruth,
    rng: np.random.Generator,
    *,
    exposure_s: float,
    light_e: F64 | None = None,
    direct_e: F64 | None = None,
) -> U16:
    """A uint16 frame: bias + (flat x light + direct + dark current) with Poisson and read noise.

    `light_e` is the photo-electrons the optics deliver (the flat applies); `direct_e` those
    deposited in the sensor itself (cosmic rays: no flat). Neither is a dark (or, at exposure
    0, a bias). Values clip at 0 and 65535 like a 16-bit camera.
    """
    model = truth.model
    electrons = truth.dark_e_s.astype(np.float64) * exposure_s
    if light_e is not None:
        electrons = electrons + truth.flat * light_e
    if direct_e is not None:
        electrons = electrons + direct_e
    counts = rng.poisson(np.maximum(electrons, 0.0)).astype(np.float64)
    counts += rng.normal(0.0, model.read_noise_e, truth.shape)
    adu = truth.bias_adu + counts / model.gain_e_per_adu
    return np.clip(np.rint(adu), 0, _FULL_SCALE_ADU).astype(np.uint16)


@dataclass(frozen=True)
class SessionConfig:
    """A night of one target: calibration frames and dithered lights with defects.

    - flat_level_e: photo-electrons per pixel of a flat (about half the well, as NINA's
      flat wizard aims for).
    - sky_e, sky_slope_yx: sky per light at the centre and its gradient across the frame.
    - seeing_sigma_px: range of star Gaussian sigmas, one per light.
    - dither_px / rotation_deg: largest dither shift per axis and field rotation.
    - trail_every: every n-th light gets a satellite trail (0: none).
    - cosmic_rays: hits per light.
    """

    sensor: SensorModel = SensorModel()
    bias_frames: int = 15
    dark_frames: int = 15
    flat_frames: int = 15
    light_frames: int = 30
    exposure_s: float = 120.0
    flat_exposure_s: float = 2.0
    flat_level_e: float = 25_000.0
    star_count: int = 150
    star_flux_e: tuple[float, float] = (5e3, 5e5)
    sky_e: float = 800.0
    sky_slope_yx: tuple[float, float] = (0.05, 0.1)
    nebula_peak_e: float = 150.0
    seeing_sigma_px: tuple[float, float] = (1.4, 2.0)
    dither_px: float = 12.0
    rotation_deg: float = 0.3
    trail_every: int = 10
    trail_peak_e: float = 3000.0
    cosmic_rays: int = 20
    seed: int = 1


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One generated frame with its truth: IMAGETYP, exposure, data and what it contains.

    For lights: `transform` (reference -> frame), the star sigma, the noiseless scene in e-
    (before the flat, without defects) and the mask of trail and cosmic-ray pixels.
    """

    kind: str
    exposure_s: float
    data: U16
    transform: F64 | None = None
    sigma_px: float | None = None
    scene_e: F64 | None = None
    defects: Mask | None = None


def session_stars(config: SessionConfig) -> StarField:
    """The session's star field in reference coordinates, clear of the dither margin."""
    rng = np.random.default_rng([config.seed, 1])
    margin = config.dither_px + 10.0
    return random_star_field(
        rng, config.sensor.shape, config.star_count, config.star_flux_e, margin
    )


def session_nebula(config: SessionConfig) -> Nebula:
    height, width = config.sensor.shape
    return Nebula(
        centers_yx=((0.45 * height, 0.55 * width), (0.6 * height, 0.4 * width)),
        sigmas_px=(0.15 * min(height, width), 0.08 * min(height, width)),
        peaks_e=(config.nebula_peak_e, 0.6 * config.nebula_peak_e),
    )


def light_scene(config: SessionConfig, transform: F64, sigma_px: float) -> F64:
    """Noiseless e- of a light before the flat: sky gradient, nebula and stars."""
    shape = config.sensor.shape
    stars = session_stars(config)
    scene = sky_gradient(shape, config.sky_e, config.sky_slope_yx, transform)
    scene += render_nebula(shape, session_nebula(config), transform)
    render_stars(shape, apply_transform(transform, stars.yx), stars.flux_e, sigma_px, scene)
    return scene


def session_frames(
    config: SessionConfig, truth: SensorTruth | None = None
) -> Iterator[SyntheticFrame]:
    """Bias, dark, flat, then light frames, one at a time so a big session fits in memory.

    The first light is undithered: its frame is the reference grid.
    """
    truth = truth or sensor_truth(config.sensor)
    rng = np.random.default_rng([config.seed, 2])
    for _ in range(config.bias_frames):
        yield SyntheticFrame("BIAS", 0.0, expose(truth, rng, exposure_s=0.0))
    for _ in range(config.dark_frames):
        yield SyntheticFrame(
            "DARK", config.exposure_s, expose(truth, rng, exposure_s=config.exposure_s)
        )
    flat_light = np.full(truth.shape, config.flat_level_e)
    for _ in range(config.flat_frames):
        data = expose(truth, rng, exposure_s=config.flat_exposure_s, light_e=flat_light)
        yield SyntheticFrame("FLAT", config.flat_exposure_s, data)
    shape = config.sensor.shape
    for index in range(config.light_frames):
        if index == 0:
            shift, rotation = (0.0, 0.0), 0.0
        else:
            shift = (
                float(rng.uniform(-config.dither_px, config.dither_px)),
                float(rng.uniform(-config.dither_px, config.dither_px)),
            )
            rotation = float(rng.uniform(-config.rotation_deg, config.rotation_deg))
        transform = dither(shape, shift, rotation)
        sigma = float(rng.uniform(*config.seeing_sigma_px))
        scene = light_scene(config, transform, sigma)
        hits_e, defects = cosmic_rays(shape, rng, config.cosmic_rays, (2e3, 2e4))
        light = scene
        if config.trail_every and index % config.trail_every == config.trail_every - 1:
            trail_e, trail_mask = satellite_trail(shape, rng, config.trail_peak_e)
            light = scene + trail_e
            defects |= trail_mask
        data = expose(truth, rng, exposure_s=config.exposure_s, light_e=light, direct_e=hits_e)
        yield SyntheticFrame("LIGHT", config.exposure_s, data, transform, sigma, scene, defects)


SIRIL_IMAGETYP = {
    "BIAS": "Bias Frame",
    "DARK": "Dark Frame",
    "FLAT": "Flat Field",
    "LIGHT": "Light Frame",
}
"""IMAGETYP as Siril, SGP and MaxIm DL spell it (NINA writes the plain kinds)."""


def write_session(
    folder: Path,
    config: SessionConfig,
    *,
    target: str = "SYNTH",
    filter_name: str = "L",
    imagetyp: Mapping[str, str] = SIRIL_IMAGETYP,
    on_frame: Callable[[SyntheticFrame, Path], None] | None = None,
    bayer_pattern: str | None = None,
) -> list[Path]:
    """Write a session as 16-bit FITS files in Siril's layout: ``biases/``, ``darks/``,
    ``flats/``, ``lights/``, with the headers grouping reads (IMAGETYP, EXPTIME, FILTER,
    OBJECT, XBINNING, GAIN, CCD-TEMP), one frame at a time (bounded memory). Returns the
    paths in `session_frames` order; the truth is `session_frames(config)` again, or
    `on_frame(frame, path)` sees each frame as it is written. `bayer_pattern` (e.g. RGGB)
    labels the frames as a colour camera's: the data stays the grey scene, so every colour
    plane of a debayered frame sees the same sky."""
    subfolders = {"BIAS": "biases", "DARK": "darks", "FLAT": "flats", "LIGHT": "lights"}
    written = []
    counts: dict[str, int] = {}
    for frame in session_frames(config):
        counts[frame.kind] = counts.get(frame.kind, 0) + 1
        cards: list[FitsCard] = [
            ("IMAGETYP", imagetyp[frame.kind], "type of image"),
            ("EXPTIME", frame.exposure_s, "[s] exposure"),
            ("FILTER", None if frame.kind in ("BIAS", "DARK") else filter_name, "filter"),
            ("OBJECT", target if frame.kind == "LIGHT" else None, "target"),
            ("XBINNING", 1, "binning"),
            ("YBINNING", 1, "binning"),
            ("GAIN", 100, "camera gain"),
            ("CCD-TEMP", -10.0, "[C] sensor temperature"),
            ("BAYERPAT", bayer_pattern, "colour filter array of a colour camera"),
        ]
        path = (
            folder / subfolders[frame.kind] / f"{frame.kind.lower()}_{counts[frame.kind]:04d}.fit"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode_fits(frame.data, cards))
        written.append(path)
        if on_frame is not None:
            on_frame(frame, path)
    return written


@dataclass(frozen=True)
class ColorFieldConfig:
    """A linear RGB star field rendered from the bundled catalog, in full-scale units.

    The default points at the Carina Milky Way (RA 160, Dec -60 deg), where ~180 catalog
    stars with colours fall in 1000 x 700 px of 6 arcsec/px.

    - ra_deg, dec_deg: the frame's centre; scale_arcsec_px: pixel scale; shape: (height, width).
    - rotation_deg: position angle of the frame's +y axis from north through east, parity
      normal, as `processing.solve.Solution` reports it.
    - sigma_px: Gaussian star sigma, the same in every channel.
    - g10_flux: the G-channel flux of a G = 10 star, summed over its pixels; a star's G-channel
      flux follows its G magnitude, R and B follow from its BP-RP through
      `processing.color.expected_channel_ratios` (a G2V star is equally bright in all three).
    - sky: background level per channel (R, G, B).
    - full_well_e: electrons at full scale, for the photon noise; read_noise: in full-scale
      units. Pixels clip at 1.0 like a saturated sensor.
    """

    ra_deg: float = 160.0
    dec_deg: float = -60.0
    scale_arcsec_px: float = 6.0
    shape: tuple[int, int] = (700, 1000)
    rotation_deg: float = 0.0
    sigma_px: float = 1.5
    g10_flux: float = 1.0
    sky: tuple[float, float, float] = (0.02, 0.02, 0.02)
    full_well_e: float = 20_000.0
    read_noise: float = 5e-4
    seed: int = 0

    def __post_init__(self) -> None:
        """Raise ValueError naming the field and its allowed range."""
        if not (0.0 <= self.ra_deg < 360.0 and -90.0 <= self.dec_deg <= 90.0):
            raise ValueError(
                f"ra_deg must be in [0, 360) and dec_deg in [-90, 90], got "
                f"{self.ra_deg}, {self.dec_deg}"
            )
        if self.scale_arcsec_px <= 0:
            raise ValueError(f"scale_arcsec_px must be positive, got {self.scale_arcsec_px}")
        if min(self.shape) < 1:
            raise ValueError(f"shape must be at least 1 x 1 px, got {self.shape}")
        if self.sigma_px <= 0 or self.g10_flux <= 0 or self.full_well_e <= 0:
            raise ValueError("sigma_px, g10_flux and full_well_e must be positive")
        if min(self.sky) < 0 or self.read_noise < 0:
            raise ValueError(f"sky and read_noise must not be negative, got {self.sky}")


def tan_wcs(
    ra_deg: float,
    dec_deg: float,
    scale_arcsec_px: float,
    shape: tuple[int, int],
    rotation_deg: float = 0.0,
) -> WCS:
    """A TAN WCS centred on the frame (CRPIX at its centre pixel), normal parity (CD det < 0),
    +y at position angle `rotation_deg` from north through east."""
    height, width = shape
    scale = scale_arcsec_px / 3600.0
    angle = math.radians(rotation_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.crval = [ra_deg, dec_deg]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]
    wcs.wcs.cd = np.array([[-scale * cos, scale * sin], [scale * sin, scale * cos]])
    wcs.pixel_shape = (width, height)
    return wcs


def color_star_field(
    config: ColorFieldConfig, catalog: npt.NDArray[np.void] | None = None
) -> tuple[F32, WCS]:
    """Render the catalog's stars with colours in a field: (image (y, x, 3) float32, its WCS).

    Stars whose BP-RP lies outside the colour relation's range are drawn with the nearest
    colour it covers (they are in the sky all the same; calibration does not use them).
    Hipparcos rows (no colour) are left out. `catalog` is `load_gaia_stars()` when not given.
    """
    if catalog is None:
        catalog = load_gaia_stars()
    height, width = config.shape
    wcs = tan_wcs(
        config.ra_deg, config.dec_deg, config.scale_arcsec_px, config.shape, config.rotation_deg
    )
    reach_deg = 0.5 * math.hypot(height, width) * config.scale_arcsec_px / 3600.0 + 0.1
    band = catalog[np.abs(catalog["dec_deg"] - config.dec_deg) < reach_deg]
    bp_rp = band["bp_mag"].astype(np.float64) - band["rp_mag"].astype(np.float64)
    near = np.isfinite(bp_rp) & (
        _separation_deg(band["ra_deg"], band["dec_deg"], config.ra_deg, config.dec_deg) < reach_deg
    )
    stars, bp_rp = band[near], bp_rp[near]
    x, y = wcs.world_to_pixel_values(stars["ra_deg"], stars["dec_deg"])
    reach = _STAMP_SIGMAS * config.sigma_px
    on_frame = (x > -reach) & (x < width - 1 + reach) & (y > -reach) & (y < height - 1 + reach)
    yx = np.column_stack([y[on_frame], x[on_frame]]).astype(np.float64)
    green = config.g10_flux * 10.0 ** (-0.4 * (stars["g_mag"][on_frame].astype(np.float64) - 10))
    r_over_g, b_over_g = expected_channel_ratios(np.clip(bp_rp[on_frame], *BP_RP_RANGE))
    rng = np.random.default_rng(config.seed)
    image = np.empty((height, width, 3), dtype=np.float32)
    for channel, flux in enumerate((green * r_over_g, green, green * b_over_g)):
        light = np.full(config.shape, config.sky[channel])
        render_stars(config.shape, yx, flux, config.sigma_px, light)
        electrons = rng.poisson(light * config.full_well_e).astype(np.float64)
        signal = electrons / config.full_well_e + rng.normal(0.0, config.read_noise, config.shape)
        image[..., channel] = np.minimum(signal, 1.0)
    return image, wcs


def _separation_deg(
    ra_deg: npt.ArrayLike, dec_deg: npt.ArrayLike, ra0_deg: float, dec0_deg: float
) -> F64:
    """Great-circle angle (deg) of each position from (ra0, dec0), by the haversine."""
    ra, dec = np.radians(ra_deg), np.radians(dec_deg)
    ra0, dec0 = math.radians(ra0_deg), math.radians(dec0_deg)
    h = np.sin((dec - dec0) / 2) ** 2 + math.cos(dec0) * np.cos(dec) * np.sin((ra - ra0) / 2) ** 2
    angle: F64 = np.degrees(2 * np.arcsin(np.sqrt(np.minimum(1.0, h))))
    return angle


def _centred_grid(shape: tuple[int, int]) -> tuple[F64, F64]:
    height, width = shape
    y = np.arange(height, dtype=np.float64)[:, None] - (height - 1) / 2
    x = np.arange(width, dtype=np.float64)[None, :] - (width - 1) / 2
    return y, x
