"""What a person chooses for a processing job, and the pipeline config it makes.

Kept apart from the worker so that `nightowl process` and the API's schemas read the
options without importing the database and the finishing steps.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from processing.debayer import Demosaic
from processing.drizzle import MAX_SCALE, MIN_PIXFRAC, DrizzleConfig
from processing.integrate import IntegrationConfig, Rejection
from processing.local_norm import MAX_TILE_PX, MIN_TILE_PX, LocalNormConfig
from processing.pipeline import PipelineConfig
from processing.recipe import CalibrateStep, FramesStep, IntegrateStep, Recipe, RegisterStep
from processing.register import Interpolation
from processing.rejection import rejection_config
from processing.subframes import MAX_REJECT_SIGMA, SubframeRules, Weighting

FINISHED_DIR = "finished"
"""Where a job's finished pictures go, inside its output folder."""


def physical_memory_mb() -> int:
    """The machine's physical memory, MiB."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)


_RULES = SubframeRules()


class ProcessingOptions(BaseModel):
    """What a person chooses for a job; everything else takes the pipeline's defaults."""

    model_config = ConfigDict(extra="forbid")

    rejection: Rejection = Field(
        default=Rejection.WINSORIZED, description="pixel rejection of the light integration"
    )
    weighting: Weighting = Field(default=Weighting.PSF_NOISE, description="frame weights")
    interpolation: Interpolation = Field(
        default=Interpolation.LANCZOS4, description="resampling kernel of the registration"
    )
    crop: bool = Field(default=True, description="crop to the area every frame covers")
    cosmetic: bool = Field(default=True, description="repair the master dark's hot pixels")
    reference: Path | None = Field(
        default=None, description="a light whose pixel grid the result is in (default: best)"
    )
    memory_budget_mb: int = Field(
        default=512, ge=16, le=1 << 20, description="working memory of the integration, MiB"
    )
    threads: int = Field(default=2, ge=1, le=64, description="frames processed at once")
    reject_sigma: float = Field(
        default=_RULES.reject_sigma,
        gt=0,
        le=MAX_REJECT_SIGMA,
        description="a light whose FWHM, eccentricity or background is more than this many "
        "robust sigmas above its group's median (star count below) is rejected",
    )
    min_weight: float = Field(
        default=_RULES.min_weight,
        ge=0,
        lt=1,
        description="reject a light weighing less than this fraction of the median weight",
    )
    max_eccentricity: float | None = Field(
        default=None, gt=0, le=1, description="absolute limit on star eccentricity (off: null)"
    )
    max_fwhm_px: float | None = Field(
        default=None, gt=0, le=1000, description="absolute limit on star FWHM, px (off: null)"
    )
    min_stars: int | None = Field(
        default=None, ge=0, le=1_000_000, description="absolute minimum of stars (off: null)"
    )
    local_normalization: bool = Field(
        default=False, description="match each light to the reference tile by tile first"
    )
    ln_tile_px: int = Field(
        default=256,
        ge=MIN_TILE_PX,
        le=MAX_TILE_PX,
        description="tile side of the local normalisation, px",
    )
    drizzle: int = Field(
        default=1,
        ge=1,
        le=MAX_SCALE,
        description="drizzle scale: output pixels per input pixel along each axis (1: off)",
    )
    pixfrac: float = Field(
        default=1.0,
        ge=MIN_PIXFRAC,
        le=1.0,
        description="drizzle drop size as a fraction of an input pixel (Siril's default 1)",
    )

    @field_validator("memory_budget_mb")
    @classmethod
    def _within_the_machine(cls, value: int) -> int:
        """A budget beyond the physical memory would swap the machine to a standstill."""
        total = physical_memory_mb()
        if value > total:
            raise ValueError(
                f"memory_budget_mb={value} is more than this machine's memory "
                f"({total} MiB); give at most {total}"
            )
        return value

    def pipeline_config(self) -> PipelineConfig:
        default = PipelineConfig()
        integration = IntegrationConfig(
            rejection=rejection_config(self.rejection),
            memory_budget_bytes=self.memory_budget_mb * 1024 * 1024,
            threads=self.threads,
        )
        return replace(
            default,
            weighting=self.weighting,
            interpolation=self.interpolation,
            crop=self.crop,
            cosmetic=default.cosmetic if self.cosmetic else None,
            reference=self.reference,
            integration=integration,
            threads=self.threads,
            local_normalization=(
                LocalNormConfig(self.ln_tile_px) if self.local_normalization else None
            ),
            drizzle=DrizzleConfig(self.drizzle, self.pixfrac) if self.drizzle > 1 else None,
            subframes=replace(
                default.subframes,
                reject_sigma=self.reject_sigma,
                min_weight=self.min_weight,
                max_eccentricity=self.max_eccentricity,
                max_fwhm_px=self.max_fwhm_px,
                min_stars=self.min_stars,
            ),
        )


def recipe_pipeline_config(options: ProcessingOptions, recipe: Recipe) -> PipelineConfig:
    """A job's pipeline config: its `options`, with what the recipe's stacking steps say
    in their place (the recipe wins; a step the recipe lacks leaves its options alone):

    - calibrate: `cosmetic`, and the debayering method (`demosaic`);
    - frames: `weighting`, `reject_sigma`, `max_eccentricity`, `max_fwhm_px`, `min_stars`
      (a recipe's null limit turns an option's limit off);
    - register: `interpolation`;
    - integrate: `rejection`, `crop` from `crop_to_coverage`, `local_normalization`,
      `ln_tile_px`, `drizzle` and `pixfrac`.

    Raises ValueError for a setting the pipeline does not have (`daemon.recipes` refuses
    such a recipe before a job is queued)."""
    stacking = recipe.stacking()
    calibrate = stacking.get("calibrate")
    frames = stacking.get("frames")
    register = stacking.get("register")
    integrate = stacking.get("integrate")
    updates: dict[str, Any] = {}
    if isinstance(calibrate, CalibrateStep):
        updates["cosmetic"] = calibrate.cosmetic
    if isinstance(frames, FramesStep):
        updates |= {
            "weighting": frames.weighting,
            "reject_sigma": frames.reject_sigma,
            "max_eccentricity": frames.max_eccentricity,
            "max_fwhm_px": frames.max_fwhm_px,
            "min_stars": frames.min_stars,
        }
    if isinstance(register, RegisterStep):
        updates["interpolation"] = register.interpolation
    if isinstance(integrate, IntegrateStep):
        updates |= {
            "rejection": integrate.rejection,
            "crop": integrate.crop_to_coverage,
            "local_normalization": integrate.local_normalization,
            "ln_tile_px": integrate.ln_tile_px,
            "drizzle": integrate.drizzle,
            "pixfrac": integrate.pixfrac,
        }
    merged = ProcessingOptions.model_validate(options.model_dump() | updates)
    config = merged.pipeline_config()
    if isinstance(calibrate, CalibrateStep):
        config = replace(config, demosaic=Demosaic(calibrate.demosaic))
    return config


def job_options(config: dict[str, Any]) -> ProcessingOptions:
    """The `ProcessingOptions` in a job's config (which also holds its recipe)."""
    return ProcessingOptions.model_validate(
        {key: value for key, value in config.items() if key in ProcessingOptions.model_fields}
    )
