"""Finishing: a recipe's finishing steps turn linear masters into the picture of a target.

`finish` runs the steps of a `processing.recipe.Recipe` in order over one image. Each step
kind has one entry in `_STEPS`: it turns the recipe's parameters into the config of the
module that does the work (`background`, `color`, `denoise`, `stretch`, `masks`, `curves`,
`combine`) and calls its pure function; estimating (a background model, colour gains) stays
in those modules, apart from applying. Everything a step writes and every output file goes
through `_Outputs`, so provenance is recorded in one place:

- ``OUT/<name>_final.fits`` (float32, WCS kept and cropped with the pixels), ``.xisf``,
  ``.tif`` (16-bit), ``.jpg`` / ``.png`` (8-bit, sRGB profile) and ``_web.jpg`` (2048 px);
- ``OUT/<name>_steps/NN_<kind>.jpg``: a small preview after every step (linear images shown
  through a linked auto-STF), for the strip on the Processing page;
- ``OUT/<name>_background.fits`` and ``_background_samples.json``: the background model;
- ``OUT/<name>_final.recipe.json``: the recipe, whose SHA-256 the FITS/XISF carry as
  ``NOWLRCP`` with every step's parameters in HISTORY, so ``nightowl finish --recipe-from
  OUT/<name>_final.fits`` redoes exactly this.

Images are float32 ``(y, x, c)``, c = 1 or 3, linear masters scaled so 1.0 is the camera's
full scale (see `load_master`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.wcs import WCS

from processing import background, color, combine, curves, denoise, export, masks, stretch
from processing.io import (
    FitsCard,
    decode_fits,
    encode_fits,
    read_fits,
    safe_file_name,
    write_atomic,
)
from processing.recipe import (
    STRETCH_KINDS,
    ArcsinhStep,
    BackgroundStep,
    ColorStep,
    CombineStep,
    CropStep,
    CurvesStep,
    DenoiseLinearStep,
    DenoiseTvStep,
    DesaturateStep,
    ExportStep,
    GhsStep,
    HistogramStep,
    MaskSpec,
    Recipe,
    StepModel,
    StfStep,
)
from processing.register import Transform, register, star_positions, warp
from processing.stars import StarConfig, detect_stars
from processing.xisf import encode_xisf

log = logging.getLogger(__name__)

Image = npt.NDArray[np.float32]
ProgressCallback = Callable[[str, float], None]
Solver = Callable[[npt.NDArray[np.float32], Mapping[str, object]], WCS]
"""Plate-solves a master's luminance ``(y, x)`` given its header; raises ValueError (a
`processing.solve.SolveError`) when it cannot."""

_UINT16_FULL_SCALE = 65535.0
_STEP_PREVIEW_PX = 480
_PROXY_PX = 1024
_ALIGN_STARS = StarConfig(max_stars=200)
_ALIGNED_PX = 0.05
_RECIPE_CARD = "NOWLRCP"


class FinishError(ValueError):
    """The masters cannot be finished with this recipe: the message says what to change."""


@dataclass(frozen=True)
class Master:
    """One linear master: its channel name (``RGB`` for a colour master, else the filter's
    channel: L, R, G, B, Ha, OIII, SII), pixels ``(y, x, c)`` and header."""

    path: Path
    channel: str
    image: Image
    header: Mapping[str, object]
    sha256: str


def load_master(path: Path) -> Master:
    """A master FITS as float32 ``(y, x, c)`` scaled to the camera's full scale: data above 1
    are taken as 16-bit ADU (divided by 65535), data within [0, 1] as normalised already.
    Raises FinishError for a file that is not a (colour) image or whose filter names no
    channel."""
    buffer = path.read_bytes()
    try:
        data, header = decode_fits(buffer, colour=True)
    except ValueError as e:
        raise FinishError(f"{path}: {e}") from e
    image = np.asarray(data, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] == 3:
        image = np.moveaxis(image, 0, -1)
        name = "RGB"
    elif image.ndim == 2:
        image = image[:, :, None]
        filter_name = header.get("FILTER")
        channel = combine.channel_of(str(filter_name)) if filter_name else None
        name = channel or "L"
    else:
        raise FinishError(f"{path}: a master is (y, x) or (3, y, x), not {image.shape}")
    finite = image[np.isfinite(image)]
    peak = float(finite.max()) if finite.size else 0.0
    if peak > 1.0:
        image = image / np.float32(_UINT16_FULL_SCALE)
    image = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0).astype(np.float32)
    return Master(path, name, np.ascontiguousarray(image), header, _sha(buffer))


@dataclass
class StepRecord:
    """What one step did: its notes, time and preview, and the files it wrote."""

    index: int
    kind: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    preview: Path | None = None
    products: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishResult:
    name: str
    outputs: dict[str, Path]
    steps: tuple[StepRecord, ...]
    notes: tuple[str, ...]
    recipe_digest: str

    def summary(self) -> dict[str, object]:
        """Plain JSON data for the CLI's ``--json`` and the job's outputs."""
        return {
            "name": self.name,
            "recipe_sha256": self.recipe_digest,
            "outputs": {kind: str(path) for kind, path in self.outputs.items()},
            "notes": list(self.notes),
            "steps": [
                {
                    "index": s.index,
                    "kind": s.kind,
                    "seconds": round(s.seconds, 3),
                    "notes": s.notes,
                    "preview": None if s.preview is None else str(s.preview),
                    "products": {k: str(v) for k, v in s.products.items()},
                }
                for s in self.steps
            ],
        }


@dataclass(frozen=True)
class _State:
    """The image between steps and what travels with it."""

    image: Image
    linear: bool
    wcs: WCS | None
    header: Mapping[str, object]
    masters: tuple[Master, ...]
    solver: Solver | None = None


class _Outputs:
    """Every file of one finishing run, written atomically under `out_dir`."""

    def __init__(self, out_dir: Path, name: str, recipe: Recipe) -> None:
        self.out_dir = out_dir
        self.name = name
        self.recipe = recipe
        self.steps_dir = out_dir / f"{name}_steps"
        self.files: dict[str, Path] = {}

    def path(self, suffix: str) -> Path:
        return self.out_dir / f"{self.name}{suffix}"

    def write(self, kind: str, suffix: str, data: bytes) -> Path:
        path = self.path(suffix)
        write_atomic(path, data)
        self.files[kind] = path
        return path

    def preview(self, index: int, kind: str, state: _State) -> Path:
        self.steps_dir.mkdir(parents=True, exist_ok=True)
        path = self.steps_dir / f"{index:02d}_{kind}.jpg"
        small = export.downscale(state.image, _STEP_PREVIEW_PX)
        write_atomic(path, _display_jpeg(small, state.linear))
        return path

    def proxy(self, state: _State) -> None:
        """The linear image before the first stretch, downscaled, for `render_preview`."""
        small = export.downscale(state.image, _PROXY_PX)
        planes = _planar(np.ascontiguousarray(np.moveaxis(small, -1, 0)))
        self.write("proxy", "_proxy.fits", encode_fits(planes, [], ["linear proxy"]))

    def history(self, masters: Sequence[Master], records: Sequence[StepRecord]) -> list[str]:
        lines = ["Nightowl finishing", f"recipe {self.recipe.name} sha256 {self.recipe.digest()}"]
        for master in masters:
            lines += [f"master {master.path.name} ({master.channel})", f"sha256 {master.sha256}"]
        steps = self.recipe.finishing()
        for record in records:
            params = json.dumps(steps[record.index].model_dump(mode="json"), sort_keys=True)
            lines.append(f"step {record.index} {params}")
            lines += [f"  {note}" for note in record.notes]
        return lines

    def cards(self, state: _State) -> list[FitsCard]:
        cards: list[FitsCard] = [
            ("IMAGETYP", "FINISHED LIGHT", "finished picture, non-linear"),
            ("OBJECT", _text(state.header.get("OBJECT")), "target"),
            ("SWCREATE", "Nightowl", "software that made the file"),
            (_RECIPE_CARD, self.recipe.digest(), ""),  # the SHA-256 fills the card
        ]
        for key in ("TOTEXP", "NCOMBINE", "FOCALLEN", "XPIXSZ", "YPIXSZ", "INSTRUME", "TELESCOP"):
            value = state.header.get(key)
            if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                cards.append((key, value, ""))
        if state.wcs is not None:
            cards += _wcs_cards(state.wcs)
        return cards


def finish(
    masters: Sequence[Master],
    recipe: Recipe,
    out_dir: Path,
    *,
    name: str | None = None,
    progress: ProgressCallback | None = None,
    solver: Solver | None = None,
) -> FinishResult:
    """Run `recipe`'s finishing steps over `masters` (one target) into `out_dir`.

    Several masters need a ``combine`` step (RGB, LRGB, SHO, HOO); one master is the image.
    `solver` plate-solves a master without a WCS for the photometric colour calibration
    (`plate_solver`); without one, such a master is white-balanced on its stars instead.
    Raises FinishError when the masters and the recipe do not fit together, OSError when
    `out_dir` cannot be written. Never modifies the masters."""
    if not masters:
        raise FinishError("no master to finish")
    steps = recipe.finishing()
    if len(masters) > 1 and not any(isinstance(s, CombineStep) for s in steps):
        raise FinishError(
            f"{len(masters)} masters need a combine step in the recipe (RGB, LRGB, SHO, HOO)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    first = masters[0]
    name = name or safe_file_name(f"{_text(first.header.get('OBJECT')) or first.path.stem}")
    outputs = _Outputs(out_dir, name, recipe)
    state = _State(
        image=first.image,
        linear=True,
        wcs=color.wcs_from_header(first.header),
        header=first.header,
        masters=tuple(masters),
        solver=solver,
    )
    report = progress or (lambda stage, fraction: None)
    records: list[StepRecord] = []
    notes: list[str] = []
    for index, step in enumerate(steps):
        report(step.kind, index / max(1, len(steps)))
        record = StepRecord(index, step.kind, 0.0)
        started = time.perf_counter()
        if isinstance(step, ExportStep):
            _export(state, step, outputs, [*records, record])
        else:
            if step.kind in STRETCH_KINDS and state.linear:
                outputs.proxy(state)
            state = _apply(state, step, record, outputs)
        record.seconds = time.perf_counter() - started
        if not isinstance(step, ExportStep):
            record.preview = outputs.preview(index, step.kind, state)
        records.append(record)
        notes += record.notes
        log.info("finishing %s: %s took %.2f s", name, step.kind, record.seconds)
    if not any(isinstance(s, ExportStep) for s in steps):
        _export(state, ExportStep(), outputs, records)
    recipe_path = outputs.path("_final.recipe.json")
    write_atomic(
        recipe_path, (json.dumps(recipe.model_dump(mode="json"), indent=2) + "\n").encode()
    )
    outputs.files["recipe"] = recipe_path
    report("done", 1.0)
    return FinishResult(name, dict(outputs.files), tuple(records), tuple(notes), recipe.digest())


def render_preview(proxy: Path, recipe: Recipe, max_size_px: int = 1024) -> bytes:
    """A JPEG of the recipe's steps from its first stretch on, applied to a finishing run's
    proxy (the linear image just before its first stretch, downscaled): what the Processing
    page shows while a person drags the stretch's handles. Raises FinishError for a proxy
    that cannot be read, OSError when it is gone."""
    data, header = read_fits(proxy, colour=True)
    planes = np.asarray(data, dtype=np.float32)
    image = planes[:, :, None] if planes.ndim == 2 else np.moveaxis(planes, 0, -1)
    state = _State(np.ascontiguousarray(image), True, None, header, ())
    steps = recipe.finishing()
    first = next((i for i, s in enumerate(steps) if s.kind in STRETCH_KINDS), len(steps))
    for index, step in enumerate(steps[first:], start=first):
        if not isinstance(step, (ExportStep, CombineStep)):
            state = _apply(state, step, StepRecord(index, step.kind, 0.0), None)
    small = export.downscale(state.image, max_size_px)
    return _display_jpeg(small, state.linear)


@dataclass(frozen=True)
class ProxyHistogram:
    """Pixel counts of a linear proxy per channel, `counts` ``(channels, bins)`` over equal
    bins spanning [0, `upper`] (values outside are not counted), and the stretch the
    histogram's handles start from."""

    counts: npt.NDArray[np.int64]
    upper: float
    stf: stretch.StfParameters


_HISTOGRAM_PERCENTILE = 99.0
_HISTOGRAM_MIDTONES_SPAN = 3.0
HISTOGRAM_MIN_UPPER = 1e-6
"""The narrowest histogram range: a 16-bit level is 1.5e-5, and far narrower ranges have
bins too small for floating point."""


def read_proxy(path: Path) -> Image:
    """A finishing run's linear proxy (``<name>_proxy.fits``) as float32 ``(y, x, c)``.
    Raises ValueError for a file that is not a FITS image, OSError when it is gone."""
    data, _ = read_fits(path, colour=True)
    planes = np.asarray(data, dtype=np.float32)
    if planes.ndim == 2:
        return planes[:, :, None]
    if planes.ndim == 3:
        return np.ascontiguousarray(np.moveaxis(planes, 0, -1))
    raise ValueError(f"{path}: a proxy is (y, x) or (c, y, x), not {planes.shape}")


def proxy_histogram(
    image: Image,
    *,
    bins: int = 512,
    upper: float | None = None,
    stf: stretch.StfParameters | None = None,
    config: stretch.StfConfig | None = None,
) -> ProxyHistogram:
    """The histogram a person edits a stretch on: counts of each channel of a linear image
    ``(y, x, c)`` in `bins` equal bins over [0, `upper`].

    `stf` is the stretch the handles start from (the job's); None takes the image's own
    linked auto-STF under `config` (PixInsight's defaults when None). Without `upper`, the
    range ends at the 99th percentile of all values, widened to three times the midtones
    level (the input level the stretch maps to 0.5) and to the highlights below 1, capped
    at 1: a linear sky sits within the first percent of [0, 1], so a full-range histogram
    would squeeze the handles into a few pixels, while the stars beyond the 99th percentile
    matter only to the highlights. Raises ValueError for `bins` outside 16..4096, `upper`
    outside [`HISTOGRAM_MIN_UPPER`, 1] or an image that is not ``(y, x, c)``. Never
    modifies `image`."""
    if not 16 <= bins <= 4096:
        raise ValueError(f"bins must be within 16..4096, got {bins}")
    if upper is not None and not HISTOGRAM_MIN_UPPER <= upper <= 1.0:
        raise ValueError(f"upper must be within {HISTOGRAM_MIN_UPPER}..1, got {upper}")
    if image.ndim != 3 or image.shape[2] not in (1, 3) or image.size == 0:
        raise ValueError(f"image must be (y, x, 1) or (y, x, 3), not {image.shape}")
    finite = np.nan_to_num(image, nan=0.0, posinf=1.0, neginf=0.0)
    start = stf or stretch.auto_stf(np.clip(finite, 0.0, 1.0), config or stretch.StfConfig())
    if upper is None:
        level = start.shadows + start.midtones * (start.highlights - start.shadows)
        top = float(np.percentile(finite, _HISTOGRAM_PERCENTILE))
        wanted = max(top, _HISTOGRAM_MIDTONES_SPAN * level)
        if start.highlights < 1.0:
            wanted = max(wanted, start.highlights)
        upper = min(1.0, max(HISTOGRAM_MIN_UPPER, wanted)) if wanted > 0.0 else 1.0
    counts = np.stack(
        [
            np.histogram(finite[:, :, c], bins=bins, range=(0.0, upper))[0]
            for c in range(finite.shape[2])
        ]
    ).astype(np.int64)
    return ProxyHistogram(counts, float(upper), start)


def plate_solver(cache_dir: Path) -> Solver:
    """A `Solver` from a master's FOCALLEN and XPIXSZ (scale +-20 %; without them, frames
    from other software, every field size) and RA/DEC (a 5 degree hint when present), with
    the pattern databases in `cache_dir` (built on first use)."""
    from processing.solve import ScaleRange, SkyHint, solve
    from processing.stars import plate_scale_arcsec_px

    def run(luminance: npt.NDArray[np.float32], header: Mapping[str, object]) -> WCS:
        focal, pixel = header.get("FOCALLEN"), header.get("XPIXSZ")
        scale = None
        if isinstance(focal, (int, float)) and isinstance(pixel, (int, float)) and focal > 0:
            scale = ScaleRange.around(plate_scale_arcsec_px(float(pixel), float(focal)))
        ra, dec = header.get("RA"), header.get("DEC")
        hint = None
        if isinstance(ra, (int, float)) and isinstance(dec, (int, float)):
            hint = SkyHint(float(ra) % 360.0, float(dec), 5.0)
        return solve(luminance, scale=scale, cache_dir=cache_dir, hint=hint).wcs

    return run


def recipe_of_output(path: Path) -> Recipe:
    """The recipe a finished FITS was made with: its sidecar ``.recipe.json``, checked
    against the ``NOWLRCP`` card. Raises FinishError when either is missing or they differ."""
    from processing.recipe import RecipeError, recipe_from_json

    _, header = read_fits(path, colour=True)
    digest = header.get(_RECIPE_CARD)
    if not isinstance(digest, str):
        raise FinishError(f"{path} has no {_RECIPE_CARD} card: not a finished Nightowl picture")
    sidecar = path.with_suffix(".recipe.json")
    try:
        recipe = recipe_from_json(sidecar.read_bytes())
    except OSError as e:
        raise FinishError(f"{sidecar}: {e.strerror}; it holds the recipe of {path.name}") from e
    except RecipeError as e:
        raise FinishError(f"{sidecar}: {e}") from e
    if recipe.digest() != digest:
        raise FinishError(f"{sidecar} is not the recipe {path.name} was made with (sha256 differs)")
    return recipe


# --- every target of a stacking job -----------------------------------------------------------


@dataclass(frozen=True)
class LinearMaster:
    """A linear master a stacking job made: its group's name, its target, its FITS file."""

    group: str
    target: str
    path: Path


def linear_masters(outputs: dict[str, Any]) -> list[LinearMaster]:
    """The linear masters in a stacking job's summary (its `groups`' FITS outputs)."""
    return [
        LinearMaster(str(g["name"]), str(g.get("target") or ""), Path(g["outputs"]["fits"]))
        for g in outputs.get("groups", [])
        if "fits" in g.get("outputs", {})
    ]


def finish_targets(
    masters: Sequence[LinearMaster],
    recipe: Recipe,
    out_dir: Path,
    report: ProgressCallback,
    solver: Solver | None = None,
) -> list[dict[str, Any]]:
    """Finish every target's masters with `recipe` into `out_dir`: one entry per picture,
    `processing.finish.FinishResult.summary()` plus its `target`, or ``{target, name,
    error}`` when it could not be made (the other targets go on). Masters of one target
    but of different sizes (another camera, binning or crop) cannot be combined: each is
    finished alone, under its group's name, and the entry's notes say so. `solver` as for
    `finish`. Blocking and CPU-heavy: the daemon runs it in a job's child process."""
    by_target: dict[str, list[LinearMaster]] = {}
    for master in masters:
        by_target.setdefault(master.target or master.group, []).append(master)
    entries: list[dict[str, Any]] = []
    for index, (target, group) in enumerate(by_target.items()):

        def within(fraction: float, index: int = index) -> None:
            report("finishing", (index + fraction) / len(by_target))

        entries += _finish_target(target, group, recipe, out_dir, within, solver)
    return entries


def _finish_target(
    target: str,
    group: Sequence[LinearMaster],
    recipe: Recipe,
    out_dir: Path,
    within: Callable[[float], None],
    solver: Solver | None,
) -> list[dict[str, Any]]:
    try:
        loaded = [load_master(master.path) for master in group]
    except (OSError, ValueError) as e:
        log.warning("finishing %s: %s", target, e)
        return [{"target": target, "name": safe_file_name(target), "error": str(e)}]
    sizes = sorted({master.image.shape[:2] for master in loaded})
    if len(sizes) > 1:
        note = (
            f"the masters of {target} differ in size "
            f"({', '.join(f'{h} x {w}' for h, w in sizes)} px): each was finished alone"
        )
        parts = [
            (safe_file_name(m.group), [one], [note]) for m, one in zip(group, loaded, strict=True)
        ]
    else:
        parts = [(safe_file_name(target), loaded, [])]
    entries: list[dict[str, Any]] = []
    for k, (name, chosen, notes) in enumerate(parts):

        def step(_kind: str, fraction: float, k: int = k) -> None:
            within((k + fraction) / len(parts))

        try:
            result = finish(chosen, recipe, out_dir, name=name, progress=step, solver=solver)
        except (OSError, ValueError) as e:  # FinishError is a ValueError
            log.warning("finishing %s: %s", name, e)
            entries.append({"target": target, "name": name, "error": str(e)})
            continue
        except Exception as e:  # a supervisor: one target's failure is its entry's error
            log.exception("finishing %s failed", name)
            entries.append({"target": target, "name": name, "error": f"{type(e).__name__}: {e}"})
            continue
        entry: dict[str, Any] = {**result.summary(), "target": target}
        entry["notes"] = notes + list(entry["notes"])
        entries.append(entry)
    return entries


# --- the steps ------------------------------------------------------------------------------


def _apply(state: _State, step: Any, record: StepRecord, out: _Outputs | None) -> _State:
    """One step; a stretch leaves the image non-linear."""
    after = _STEPS[type(step)](state, step, record, out)
    if step.kind in STRETCH_KINDS:
        after = _replace(after, linear=False)
    return after


def _combine(state: _State, step: CombineStep, record: StepRecord, _: object) -> _State:
    by_channel = {m.channel: m.image[:, :, 0] for m in state.masters if m.channel != "RGB"}
    colour = next((m for m in state.masters if m.channel == "RGB"), None)
    if len(by_channel) > 1:
        by_channel = _aligned(by_channel, record)
    palette: str = step.palette
    if palette == "auto":
        palette = _auto_palette(set(by_channel), colour is not None)
    if palette == "MONO":
        record.notes.append(f"one {next(iter(by_channel))} master: a mono picture")
        return state
    if palette in ("RGB", "LRGB") and colour is not None:
        rgb = colour.image
    elif palette in ("RGB", "LRGB"):
        missing = combine.missing_channels(by_channel, ("R", "G", "B"))
        if missing:
            raise FinishError(f"combine {palette}: missing {', '.join(missing)} masters")
        rgb = combine.combine_rgb(by_channel["R"], by_channel["G"], by_channel["B"])
    else:
        rgb = combine.combine_palette(by_channel, combine.Palette(palette))
    if palette == "LRGB":
        if "L" not in by_channel:
            raise FinishError("combine LRGB: no luminance (L) master")
        config = combine.LrgbConfig(lightness_weight=step.lightness_weight)
        rgb = combine.combine_lrgb(by_channel["L"], rgb, config)
    if len(state.masters) == 1 and palette == "RGB" and colour is not None:
        record.notes.append("one colour master: no combination needed")
    else:
        used = sorted(by_channel) + (["RGB"] if colour is not None else [])
        record.notes.append(f"combined {palette} from {', '.join(used)}")
    unused = [c for c in by_channel if c not in _PALETTE_CHANNELS[palette]]
    if unused:
        record.notes.append(f"not used by {palette}: {', '.join(sorted(unused))}")
    return _replace(state, image=np.asarray(rgb, dtype=np.float32))


def _aligned(
    planes: dict[str, npt.NDArray[np.float32]], record: StepRecord
) -> dict[str, npt.NDArray[np.float32]]:
    """Mono masters of one target on the first one's pixel grid: each group of a night is
    registered to its own best light unless a common reference was asked for, so the filters'
    masters may be a dither apart. Matched on their stars, resampled (Lanczos) where they
    differ by more than 0.05 px; the edge a shift uncovers takes the channel's median sky.
    Raises FinishError when a master's stars do not match the first's."""
    names = list(planes)
    first = names[0]
    reference = star_positions(detect_stars(planes[first], _ALIGN_STARS))
    out = {first: planes[first]}
    for name in names[1:]:
        plane = planes[name]
        try:
            stars = star_positions(detect_stars(plane, _ALIGN_STARS))
            transform = register(stars, reference).transform
        except ValueError as e:
            raise FinishError(f"combine: the {name} master does not match {first}: {e}") from e
        if transform.max_distance_px(Transform.identity(), plane.shape) <= _ALIGNED_PX:
            out[name] = plane
            continue
        warped = warp(plane, transform, planes[first].shape).image
        out[name] = np.where(np.isnan(warped), np.nanmedian(warped), warped).astype(np.float32)
        dy, dx = transform.shift_yx
        record.notes.append(
            f"{name} aligned to {first}: shift {dy:+.2f}, {dx:+.2f} px, "
            f"rotation {transform.rotation_deg:+.3f} deg"
        )
    return out


_PALETTE_CHANNELS = {
    "RGB": ("R", "G", "B"),
    "LRGB": ("L", "R", "G", "B"),
    "SHO": ("SII", "Ha", "OIII"),
    "HOO": ("Ha", "OIII"),
}


def _auto_palette(channels: set[str], has_colour: bool) -> str:
    if "L" in channels and (has_colour or {"R", "G", "B"} <= channels):
        return "LRGB"
    if has_colour or {"R", "G", "B"} <= channels:
        return "RGB"
    if {"Ha", "OIII", "SII"} <= channels:
        return "SHO"
    if {"Ha", "OIII"} <= channels:
        return "HOO"
    if len(channels) == 1:
        return "MONO"
    raise FinishError(
        f"cannot tell how to combine {', '.join(sorted(channels))}: "
        "set the combine step's palette (RGB, LRGB, SHO, HOO)"
    )


def _crop(state: _State, step: CropStep, record: StepRecord, _: object) -> _State:
    height, width = state.image.shape[:2]
    my, mx = round(height * step.margin_percent / 100), round(width * step.margin_percent / 100)
    y0, y1, x0, x1 = my, height - my, mx, width - mx
    if step.box is not None:
        by0, by1, bx0, bx1 = step.box
        y0, y1, x0, x1 = y0 + by0, min(y1, y0 + by1), x0 + bx0, min(x1, x0 + bx1)
    if y1 - y0 < 16 or x1 - x0 < 16:
        raise FinishError(f"crop leaves {y1 - y0} x {x1 - x0} px of {height} x {width}")
    wcs = None if state.wcs is None else state.wcs[y0:y1, x0:x1]
    record.notes.append(f"crop: rows {y0}:{y1}, columns {x0}:{x1}")
    image = np.ascontiguousarray(state.image[y0:y1, x0:x1])
    return _replace(state, image=image, wcs=wcs)


def _background(
    state: _State, step: BackgroundStep, record: StepRecord, out: _Outputs | None
) -> _State:
    config = background.BackgroundConfig(
        model=background.BackgroundModelKind(step.model),
        degree=step.degree,
        smoothing=step.smoothing,
        samples_across=step.samples_across,
        box_px=step.box_px,
        tolerance=step.tolerance,
        correction=background.Correction(step.correction),
    )
    try:
        model = background.estimate_background(state.image, config)
    except ValueError as e:
        raise FinishError(f"background: {e}") from e
    kept = sum(1 for s in model.samples if s.rejected is None)
    record.notes.append(
        f"background: {step.model} model from {kept} of {len(model.samples)} samples"
    )
    if out is None:
        return _replace(state, image=background.apply_background(state.image, model, config))
    planes = np.moveaxis(model.model, -1, 0)
    record.products["background_model"] = out.write(
        "background_model", "_background.fits", encode_fits(_planar(planes), [], [])
    )
    record.products["background_samples"] = out.write(
        "background_samples",
        "_background_samples.json",
        json.dumps(_finite(model.samples_json()), allow_nan=False).encode(),
    )
    return _replace(state, image=background.apply_background(state.image, model, config))


def _color(state: _State, step: ColorStep, record: StepRecord, _: object) -> _State:
    image = state.image
    if image.shape[2] != 3:
        record.notes.append("colour calibration skipped: the image has one channel")
        return state
    if step.neutralize:
        image = color.neutralize_background(image, color.NeutralizationConfig())
    if step.photometric:
        wcs = state.wcs
        if wcs is None and state.solver is not None:
            try:
                wcs = state.solver(image.mean(axis=2, dtype=np.float32), state.header)
                record.notes.append("plate solved for the colour calibration")
            except (ValueError, RuntimeError) as e:  # SolveError, SolverDatabaseError
                record.notes.append(f"plate solving failed: {e}")
        config = color.ColorCalibrationConfig(min_stars=step.min_stars)
        calibration = color.estimate_color_gains(image, config, wcs=wcs)
        image = color.apply_color_gains(image, calibration)
        record.notes.append(calibration.note)
        state = _replace(state, wcs=wcs)
        if step.neutralize:
            # The gains scale each channel's sky too: level the skies again, so a neutral
            # background stays neutral after the white balance.
            image = color.neutralize_background(image, color.NeutralizationConfig())
    return _replace(state, image=image)


def _denoise_linear(
    state: _State, step: DenoiseLinearStep, record: StepRecord, _: object
) -> _State:
    config = denoise.StarletConfig(layers=step.layers, k=step.k, amount=step.amount)
    mask = _mask(state, step.mask)
    return _replace(state, image=denoise.starlet_denoise(state.image, config, mask))


def _stf(state: _State, step: StfStep, record: StepRecord, _: object) -> _State:
    config = stretch.StfConfig(
        shadows_clip_mad=step.shadows_clip_mad,
        target_background=step.target_background,
        linked=step.linked,
    )
    image = np.clip(state.image, 0.0, 1.0)
    if step.linked:
        params = stretch.auto_stf(image, config)
        record.notes.append(
            f"STF linked: shadows {params.shadows:.5f}, midtones {params.midtones:.5f}"
        )
        return _replace(state, image=stretch.apply_stf(image, params))
    per_channel = stretch.auto_stf_channels(image, config)
    record.notes.append(
        "STF unlinked: "
        + ", ".join(f"shadows {p.shadows:.5f} midtones {p.midtones:.5f}" for p in per_channel)
    )
    return _replace(state, image=stretch.histogram_transform(image, per_channel))


def _histogram(state: _State, step: HistogramStep, record: StepRecord, _: object) -> _State:
    params = stretch.HistogramTransform(step.shadows, step.midtones, step.highlights)
    return _replace(state, image=stretch.histogram_transform(np.clip(state.image, 0, 1), params))


def _arcsinh(state: _State, step: ArcsinhStep, record: StepRecord, _: object) -> _State:
    config = stretch.ArcsinhConfig(stretch=step.stretch, black_point=step.black_point)
    return _replace(state, image=stretch.arcsinh_stretch(np.clip(state.image, 0, 1), config))


def _ghs(state: _State, step: GhsStep, record: StepRecord, _: object) -> _State:
    config = stretch.GhsConfig(D=step.D, b=step.b, SP=step.SP, LP=step.LP, HP=step.HP)
    return _replace(state, image=stretch.ghs_stretch(np.clip(state.image, 0, 1), config))


def _denoise_tv(state: _State, step: DenoiseTvStep, record: StepRecord, _: object) -> _State:
    config = denoise.TvConfig(weight=step.weight, amount=step.amount)
    mask = _mask(state, step.mask)
    return _replace(state, image=denoise.tv_denoise(state.image, config, mask))


def _curves(state: _State, step: CurvesStep, record: StepRecord, _: object) -> _State:
    colour = state.image.shape[2] == 3
    if not colour and (step.red or step.green or step.blue or step.saturation):
        record.notes.append("curves: a mono image has no colour curves; only rgb applies")
    config = curves.CurvesConfig(
        rgb=step.rgb,
        red=step.red if colour else (),
        green=step.green if colour else (),
        blue=step.blue if colour else (),
        saturation=step.saturation if colour else (),
    )
    return _replace(state, image=curves.apply_curves(state.image, config, _mask(state, step.mask)))


def _desaturate(state: _State, step: DesaturateStep, record: StepRecord, _: object) -> _State:
    if state.image.shape[2] != 3:
        return state
    mask = _mask(state, step.mask)
    return _replace(state, image=curves.desaturate(state.image, step.amount, mask))


_STEPS: dict[type[StepModel], Callable[[_State, Any, StepRecord, Any], _State]] = {
    CombineStep: _combine,
    CropStep: _crop,
    BackgroundStep: _background,
    ColorStep: _color,
    DenoiseLinearStep: _denoise_linear,
    StfStep: _stf,
    HistogramStep: _histogram,
    ArcsinhStep: _arcsinh,
    GhsStep: _ghs,
    DenoiseTvStep: _denoise_tv,
    CurvesStep: _curves,
    DesaturateStep: _desaturate,
}


def _mask(state: _State, spec: MaskSpec | None) -> npt.NDArray[np.float32] | None:
    if spec is None:
        return None
    if spec.type == "luminance":
        made = masks.luminance_mask(state.image, masks.LuminanceMaskConfig(blur_px=spec.blur_px))
    elif spec.type == "range":
        made = masks.range_mask(
            state.image,
            masks.RangeMaskConfig(
                low=spec.low,
                high=spec.high,
                fuzziness=spec.fuzziness,
                blur_px=spec.blur_px,
                auto_stretch=state.linear,
            ),
        )
    else:
        made = masks.star_mask(
            state.image, masks.StarMaskConfig(grow_px=spec.grow_px, blur_px=spec.blur_px)
        )
    return masks.invert_mask(made) if spec.invert else made


# --- export ---------------------------------------------------------------------------------


def _export(state: _State, step: ExportStep, out: _Outputs, records: Sequence[StepRecord]) -> None:
    image = np.clip(state.image, 0.0, 1.0).astype(np.float32)
    cards = out.cards(state)
    history = out.history(state.masters, records)
    planes = _planar(np.moveaxis(image, -1, 0))
    if "fits" in step.formats:
        out.write("fits", "_final.fits", encode_fits(planes, cards, history))
    if "xisf" in step.formats:
        out.write("xisf", "_final.xisf", encode_xisf(planes, cards, history))
    picture = image[:, :, 0] if image.shape[2] == 1 else image
    if "tiff" in step.formats:
        out.write("tiff", "_final.tif", export.encode_tiff16(picture))
    if "png" in step.formats:
        out.write("png", "_final.png", export.encode_png(picture))
    if "jpeg" in step.formats:
        out.write("jpeg", "_final.jpg", export.encode_jpeg(picture, quality=step.jpeg_quality))
        web = export.web_copy(picture, step.web_size_px)
        out.write("web", "_web.jpg", export.encode_jpeg(web, quality=step.jpeg_quality))


# --- small parts ----------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    """JSON data with NaN and infinities as null, so every JSON reader can read it."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _display_jpeg(image: Image, linear: bool) -> bytes:
    picture = image[:, :, 0] if image.shape[2] == 1 else image
    if linear:
        unit = np.clip(picture, 0.0, 1.0)
        picture = stretch.apply_stf(unit, stretch.auto_stf(unit))
    return export.encode_jpeg(np.clip(picture, 0.0, 1.0).astype(np.float32), quality=85)


def _planar(planes: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return planes[0] if planes.shape[0] == 1 else planes


def _wcs_cards(wcs: WCS) -> list[FitsCard]:
    header = wcs.to_header()
    cards: list[FitsCard] = []
    for key in header:
        value = header[key]
        if isinstance(value, (str, int, float)) and key not in ("DATE-OBS", "MJD-OBS"):
            cards.append((key, value, ""))
    return cards


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _sha(buffer: bytes) -> str:
    return hashlib.sha256(buffer).hexdigest()


__all__ = [
    "FinishError",
    "FinishResult",
    "LinearMaster",
    "Master",
    "ProxyHistogram",
    "StepRecord",
    "finish",
    "finish_targets",
    "linear_masters",
    "load_master",
    "plate_solver",
    "proxy_histogram",
    "read_proxy",
    "recipe_of_output",
    "render_preview",
]
