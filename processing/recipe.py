"""A processing recipe: the whole job as a versioned document of typed steps.

A recipe is to processing what a sequence template is to a night: data, validated before
anything runs, stored as JSON (API, files, FITS provenance), never Python names. Its steps
come in two families, in this order:

- stacking (``calibrate``, ``frames``, ``register``, ``integrate``): settings of the stages
  that turn a night's frames into linear masters (`processing.pipeline`); each at most once;
- finishing (``combine``, ``crop``, ``background``, ``color``, ``denoise_linear``,
  ``stretch_stf``, ``histogram``, ``stretch_arcsinh``, ``ghs``, ``denoise_tv``, ``curves``,
  ``desaturate``, ``export``): what an imager does to a linear master by hand, applied in
  the listed order by `processing.finish`.

The default recipe is the flow of the imager Nightowl grew from: crop, background
extraction, photometric colour calibration, multiscale noise reduction on the linear image,
an STF/histogram stretch backed down a little, an arcsinh stretch, TV noise reduction
under an inverted luminance mask, curves for saturation through the luminance mask,
background desaturation, export.

`validate_recipe` turns any JSON value into a `Recipe` or a list of `RecipeIssue`s, each
with the step's path (``steps[3].smoothing``), what is wrong and how to fix it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from processing.drizzle import MAX_SCALE, MIN_PIXFRAC
from processing.local_norm import MAX_TILE_PX, MIN_TILE_PX

SCHEMA_VERSION = 1

_STEP_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
"""A level on the [0, 1] scale (1 = full scale or full effect)."""


class StepModel(BaseModel):
    model_config = _STEP_CONFIG


class MaskSpec(StepModel):
    """The mask a step acts through (1 = the step acts fully).

    luminance: the image's own brightness (after an auto-STF when the image is linear),
    blurred; range: 1 inside [low, high] of that brightness with soft edges of `fuzziness`;
    stars: discs around detected stars. `invert` swaps target and background: the seeds
    denoise and desaturate the background through an inverted luminance mask.
    """

    type: Literal["luminance", "range", "stars"] = "luminance"
    invert: bool = False
    low: Unit = Field(default=0.0, description="range mask: lower brightness, 0..1")
    high: Unit = Field(default=1.0, description="range mask: upper brightness, 0..1")
    fuzziness: Unit = Field(default=0.1, description="range mask: width of the soft edges, 0..1")
    blur_px: float = Field(default=2.0, ge=0.0, le=100.0, description="Gaussian blur, px")
    grow_px: float = Field(default=2.0, ge=0.0, le=100.0, description="stars: disc growth, px")

    @model_validator(mode="after")
    def _ordered(self) -> MaskSpec:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


# --- stacking -----------------------------------------------------------------------------


class CalibrateStep(StepModel):
    """(L - D) / F_norm of every light, then cosmetic correction and debayering."""

    kind: Literal["calibrate"] = "calibrate"
    cosmetic: bool = Field(default=True, description="repair the master dark's hot/cold pixels")
    demosaic: Literal["bilinear", "edge_aware", "vng"] = Field(
        default="edge_aware", description="debayering of one-shot-colour frames"
    )


class FramesStep(StepModel):
    """Which lights are integrated: outliers against the set's own distribution."""

    kind: Literal["frames"] = "frames"
    weighting: Literal["none", "noise", "psf_signal", "psf_noise"] = "psf_noise"
    reject_sigma: float = Field(
        default=3.0, gt=0.0, le=20.0, description="outlier limit: median + k x MAD (sigma units)"
    )
    max_eccentricity: float | None = Field(
        default=None, gt=0.0, le=1.0, description="absolute limit, off by default"
    )
    max_fwhm_px: float | None = Field(default=None, gt=0.0, le=100.0, description="absolute limit")
    min_stars: int | None = Field(default=None, ge=0, le=100_000, description="absolute limit")


class RegisterStep(StepModel):
    kind: Literal["register"] = "register"
    interpolation: Literal["bilinear", "bicubic", "lanczos4"] = "lanczos4"


class IntegrateStep(StepModel):
    kind: Literal["integrate"] = "integrate"
    rejection: str = Field(
        default="winsorized", max_length=40, description="a pixel rejection algorithm by name"
    )
    crop_to_coverage: bool = Field(default=True, description="cut to the area every frame covers")
    local_normalization: bool = Field(
        default=False, description="match each light to the reference tile by tile first"
    )
    ln_tile_px: int = Field(
        default=256, ge=MIN_TILE_PX, le=MAX_TILE_PX, description="local normalisation tile, px"
    )
    drizzle: int = Field(
        default=1, ge=1, le=MAX_SCALE, description="drizzle scale, output px per input px (1: off)"
    )
    pixfrac: float = Field(
        default=1.0, ge=MIN_PIXFRAC, le=1.0, description="drizzle drop size, input px"
    )


# --- finishing ------------------------------------------------------------------------------


class CombineStep(StepModel):
    """Masters of one target into one colour image: auto picks RGB, LRGB, SHO or HOO from the
    filters present; a one-shot-colour master is RGB already."""

    kind: Literal["combine"] = "combine"
    palette: Literal["auto", "RGB", "LRGB", "SHO", "HOO"] = "auto"
    lightness_weight: Unit = Field(default=1.0, description="LRGB: share of L in the lightness")


class CropStep(StepModel):
    """Cut the edges: a margin on every side, or a box (rows y0:y1, columns x0:x1)."""

    kind: Literal["crop"] = "crop"
    margin_percent: float = Field(default=0.0, ge=0.0, le=40.0, description="cut from each side")
    box: tuple[int, int, int, int] | None = Field(
        default=None, description="[y0, y1, x0, x1] in pixels, after the margin"
    )

    @model_validator(mode="after")
    def _box(self) -> CropStep:
        if self.box is not None:
            y0, y1, x0, x1 = self.box
            if not (0 <= y0 < y1 and 0 <= x0 < x1):
                raise ValueError("box needs 0 <= y0 < y1 and 0 <= x0 < x1")
        return self


class BackgroundStep(StepModel):
    """Background extraction (DBE): a grid of sample boxes, a smooth model, subtracted."""

    kind: Literal["background"] = "background"
    model: Literal["polynomial", "rbf", "mesh"] = "rbf"
    degree: int = Field(default=2, ge=1, le=4, description="polynomial degree")
    smoothing: float = Field(default=1.0, ge=0.0, le=1e6, description="RBF smoothing")
    samples_across: int = Field(default=20, ge=3, le=200, description="sample boxes across")
    box_px: int = Field(default=25, ge=3, le=500, description="sample box size, px")
    tolerance: float = Field(default=1.0, gt=0.0, le=20.0, description="rejection, MAD units")
    correction: Literal["subtract", "divide"] = "subtract"


class ColorStep(StepModel):
    """Background neutralisation, then photometric colour calibration against the bundled
    Gaia catalog (a white balance on the average star when there is no plate solution or too
    few matched stars: the summary says which)."""

    kind: Literal["color"] = "color"
    neutralize: bool = True
    photometric: bool = True
    min_stars: int = Field(default=20, ge=3, le=10_000, description="matched stars needed")


class DenoiseLinearStep(StepModel):
    """Multiscale (starlet) noise reduction of the linear image, like PixInsight's MLT."""

    kind: Literal["denoise_linear"] = "denoise_linear"
    layers: int = Field(default=4, ge=1, le=8, description="wavelet layers")
    k: tuple[float, ...] = Field(
        default=(3.0, 2.0, 1.0, 0.5), description="threshold per layer in noise units"
    )
    amount: Unit = Field(default=1.0, description="0 keeps the original, 1 the denoised")
    mask: MaskSpec | None = Field(
        default_factory=lambda: MaskSpec(invert=True),
        description="where to act; the default protects stars and the target, whose faint "
        "stars soft thresholds would widen",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> DenoiseLinearStep:
        if len(self.k) != self.layers or any(not 0 <= k <= 20 for k in self.k):
            raise ValueError(f"k needs {self.layers} thresholds (one per layer), each 0..20")
        return self


class StfStep(StepModel):
    """Auto-STF made permanent (a histogram transformation); `target_background` below 0.25
    backs the stretch down, leaving room for the arcsinh stretch that follows."""

    kind: Literal["stretch_stf"] = "stretch_stf"
    shadows_clip_mad: float = Field(default=-2.8, ge=-20.0, le=0.0, description="MAD units")
    target_background: float = Field(default=0.25, gt=0.0, lt=1.0, description="sky level")
    linked: bool = Field(default=True, description="one transfer for all channels")


class HistogramStep(StepModel):
    kind: Literal["histogram"] = "histogram"
    shadows: Unit = 0.0
    midtones: Unit = 0.5
    highlights: Unit = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> HistogramStep:
        if self.shadows >= self.highlights:
            raise ValueError("shadows must be below highlights")
        return self


class ArcsinhStep(StepModel):
    kind: Literal["stretch_arcsinh"] = "stretch_arcsinh"
    stretch: float = Field(default=5.0, ge=1.0, le=1000.0, description="stretch factor")
    black_point: Unit = Field(default=0.0, description="level set to black, 0..1")


class GhsStep(StepModel):
    """Generalized hyperbolic stretch."""

    kind: Literal["ghs"] = "ghs"
    D: float = Field(default=5.0, ge=0.0, le=10.0, description="stretch factor ln(D + 1)")
    b: float = Field(default=0.0, ge=-5.0, le=15.0, description="local intensity")
    SP: Unit = Field(default=0.0, description="symmetry point")
    LP: Unit = Field(default=0.0, description="shadow protection")
    HP: Unit = Field(default=1.0, description="highlight protection")

    @model_validator(mode="after")
    def _ordered(self) -> GhsStep:
        if not self.LP <= self.SP <= self.HP:
            raise ValueError("need LP <= SP <= HP")
        return self


class DenoiseTvStep(StepModel):
    """Total-variation noise reduction after the stretch, through a mask (the seeds use
    TGVDenoise under an inverted luminance mask: the background is smoothed, the target
    kept)."""

    kind: Literal["denoise_tv"] = "denoise_tv"
    weight: float = Field(default=0.05, gt=0.0, le=10.0, description="smoothing strength")
    amount: Unit = 1.0
    mask: MaskSpec | None = Field(default_factory=lambda: MaskSpec(invert=True))


Points = tuple[tuple[Unit, Unit], ...]


class CurvesStep(StepModel):
    """Monotone cubic curves (x, y points in 0..1) per channel and for saturation, through a
    mask; an empty list leaves that channel alone."""

    kind: Literal["curves"] = "curves"
    rgb: Points = ()
    red: Points = ()
    green: Points = ()
    blue: Points = ()
    saturation: Points = ()
    mask: MaskSpec | None = Field(default_factory=MaskSpec)

    @model_validator(mode="after")
    def _points(self) -> CurvesStep:
        for name in ("rgb", "red", "green", "blue", "saturation"):
            points: Points = getattr(self, name)
            increasing = all(a[0] < b[0] for a, b in itertools.pairwise(points))
            if points and (len(points) < 2 or not increasing):
                raise ValueError(f"{name} needs at least 2 points with increasing x")
            if points and (points[0][0] != 0.0 or points[-1][0] != 1.0):
                raise ValueError(f"{name} must run from x = 0 to x = 1")
        return self


class DesaturateStep(StepModel):
    """Background desaturation through an inverted luminance mask."""

    kind: Literal["desaturate"] = "desaturate"
    amount: Unit = Field(default=0.5, description="0 keeps colour, 1 makes it grey")
    mask: MaskSpec | None = Field(default_factory=lambda: MaskSpec(invert=True))


class ExportStep(StepModel):
    kind: Literal["export"] = "export"
    formats: tuple[Literal["fits", "xisf", "tiff", "jpeg", "png"], ...] = (
        "fits",
        "xisf",
        "tiff",
        "jpeg",
    )
    web_size_px: int = Field(default=2048, ge=64, le=16384, description="longer side, web copy")
    jpeg_quality: int = Field(default=92, ge=1, le=100)


Step = Annotated[
    CalibrateStep
    | FramesStep
    | RegisterStep
    | IntegrateStep
    | CombineStep
    | CropStep
    | BackgroundStep
    | ColorStep
    | DenoiseLinearStep
    | StfStep
    | HistogramStep
    | ArcsinhStep
    | GhsStep
    | DenoiseTvStep
    | CurvesStep
    | DesaturateStep
    | ExportStep,
    Field(discriminator="kind"),
]

STACKING_KINDS = ("calibrate", "frames", "register", "integrate")
STRETCH_KINDS = frozenset({"stretch_stf", "histogram", "stretch_arcsinh", "ghs"})
LINEAR_ONLY_KINDS = frozenset({"combine", "background", "color", "denoise_linear"})


class Recipe(BaseModel):
    model_config = _STEP_CONFIG

    schema_version: Literal[1] = 1
    name: str = Field(default="default", min_length=1, max_length=100)
    steps: tuple[Step, ...] = Field(max_length=100)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: the same recipe always has the same digest."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()

    def stacking(self) -> dict[str, StepModel]:
        return {step.kind: step for step in self.steps if step.kind in STACKING_KINDS}

    def finishing(self) -> tuple[Any, ...]:
        return tuple(step for step in self.steps if step.kind not in STACKING_KINDS)


@dataclass(frozen=True)
class RecipeIssue:
    """A problem of a recipe: where (``steps[3].smoothing``), what, and how to fix it."""

    path: str
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "fix": self.fix}


class RecipeError(ValueError):
    """A recipe that does not validate; `issues` says where and how to fix it."""

    def __init__(self, issues: list[RecipeIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(f"{i.path}: {i.message} ({i.fix})" for i in issues))


_ADAPTER = TypeAdapter(Recipe)


def validate_recipe(data: object) -> tuple[Recipe | None, list[RecipeIssue]]:
    """A recipe from parsed JSON, or the issues that stop it (never both)."""
    try:
        recipe = _ADAPTER.validate_python(data)
    except ValidationError as e:
        return None, [_issue(error) for error in e.errors(include_url=False)]
    issues = _order_issues(recipe)
    return (None, issues) if issues else (recipe, [])


def parse_recipe(data: object) -> Recipe:
    """Like `validate_recipe`, raising `RecipeError` with the issues."""
    recipe, issues = validate_recipe(data)
    if recipe is None:
        raise RecipeError(issues)
    return recipe


def recipe_from_json(text: str | bytes) -> Recipe:
    """Parse a recipe file's text; RecipeError for bad JSON too (path ``$``)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise RecipeError([RecipeIssue("$", f"not JSON: {e}", "fix the file's syntax")]) from e
    return parse_recipe(data)


def canonical_json(recipe: Recipe) -> str:
    return json.dumps(recipe.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def default_recipe() -> Recipe:
    """The seeds' flow, stacking settings included."""
    return Recipe(
        name="default",
        steps=(
            CalibrateStep(),
            FramesStep(),
            RegisterStep(),
            IntegrateStep(),
            CombineStep(),
            CropStep(margin_percent=0.5),
            BackgroundStep(),
            ColorStep(),
            DenoiseLinearStep(),
            StfStep(target_background=0.15),
            ArcsinhStep(stretch=3.0),
            DenoiseTvStep(),
            CurvesStep(saturation=((0.0, 0.0), (0.5, 0.62), (1.0, 1.0))),
            DesaturateStep(amount=0.8),
            ExportStep(),
        ),
    )


def _issue(error: Any) -> RecipeIssue:
    loc = [part for part in error["loc"] if not _is_tag(part)]
    path = _path(loc)
    message = error["msg"]
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        fix = "set kind to one of: " + ", ".join(_KINDS)
    elif kind == "extra_forbidden":
        fix = "remove this field (check its spelling)"
    elif kind == "missing":
        fix = "add this field"
    elif "ge" in ctx or "gt" in ctx or "le" in ctx or "lt" in ctx:
        bounds = ", ".join(f"{k} {v}" for k, v in ctx.items() if k in ("ge", "gt", "le", "lt"))
        fix = f"use a value with {bounds}"
    elif kind == "finite_number":
        fix = "use a finite number"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
        fix = "change the values as the message says"
    elif kind == "literal_error":
        fix = f"use one of {ctx.get('expected', 'the allowed values')}"
    else:
        fix = "see the default recipe (`nightowl recipe default`) for a valid value"
    return RecipeIssue(path, message, fix)


def _is_tag(part: object) -> bool:
    return isinstance(part, str) and part in _KINDS


def _path(loc: list[object]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def _order_issues(recipe: Recipe) -> list[RecipeIssue]:
    """Order rules the models cannot see alone: stacking first, each once; linear-only steps
    before the first stretch; export last."""
    issues: list[RecipeIssue] = []
    seen: set[str] = set()
    stretched_at: int | None = None
    finishing_started = False
    for index, step in enumerate(recipe.steps):
        path = f"steps[{index}]"
        if step.kind in STACKING_KINDS:
            if finishing_started:
                issues.append(
                    RecipeIssue(path, f"{step.kind} after a finishing step", "move it to the top")
                )
            if step.kind in seen:
                issues.append(RecipeIssue(path, f"a second {step.kind} step", "keep one"))
            seen.add(step.kind)
            continue
        finishing_started = True
        if step.kind in STRETCH_KINDS and stretched_at is None:
            stretched_at = index
        if step.kind in LINEAR_ONLY_KINDS and stretched_at is not None:
            issues.append(
                RecipeIssue(
                    path,
                    f"{step.kind} needs linear data, but steps[{stretched_at}] stretched it",
                    "move it before the first stretch",
                )
            )
        if step.kind == "export" and index != len(recipe.steps) - 1:
            issues.append(RecipeIssue(path, "export before other steps", "make export the last"))
    return issues


_KINDS: tuple[str, ...] = tuple(
    model.model_fields["kind"].default for model in get_args(get_args(Step)[0])
)
"""Every step kind, in the order of the `Step` union."""
