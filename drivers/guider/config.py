"""Settings of the native guider, shared by its loop, its frame source and its calibrator."""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers.guider.control import AxisSettings
from drivers.guider.stars import SelectionConfig


@dataclass(frozen=True)
class GuiderConfig:
    """Settings of the native guider; units in the names, defaults for a ~1-4 "/px guider.

    - exposure_s: guide exposure; longer averages seeing, shorter reacts faster.
    - detection_sigma: star detection threshold (sep), in background RMS.
    - search_radius_px: how far from its predicted place a guide star is looked for.
    - outlier_px: a star whose displacement differs this much from the median is left out.
    - min_matched_fraction: share of the guide stars that must be found for a fix.
    - reacquire_tolerance_px: match tolerance of the whole-frame pattern search after a loss.
    - reselect_after_frames: lost frames after which new stars are chosen (and the lock moves).
    - acquire_frames: frames tried at start before giving up with `NoGuideStar`.
    - ra, dec: controller settings per axis (RA: PHD2's hysteresis defaults; Dec: plain
      proportional).
    - calibration_distance_px, calibration_steps: each calibration leg moves the stars about
      this far in about this many pulses (step lengths come from the mount's guide rate and
      the pixel scale, or `calibration_step_ms`); at most calibration_max_steps pulses.
    - max_orthogonality_error_deg: a calibration whose axes are further from perpendicular
      than this is rejected (the stars did not move as the pulses asked).
    - pixel_scale_arcsec_px / focal_length_mm: the guide camera's scale; by default from its
      pixel size and the mount's focal length (right for an off-axis guider).
    - max_consecutive_errors, retry_delay_s, max_retry_delay_s: device-error tolerance.
    - rms_window_steps: at most this many steps in the RMS window.
    - dither_seed: seed of the dither offsets (None: random).
    """

    exposure_s: float = 1.0
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    detection_sigma: float = 5.0
    search_radius_px: float = 10.0
    outlier_px: float = 1.5
    min_matched_fraction: float = 0.5
    reacquire_tolerance_px: float = 2.0
    reselect_after_frames: int = 5
    acquire_frames: int = 3
    ra: AxisSettings = field(default_factory=AxisSettings)
    dec: AxisSettings = field(
        default_factory=lambda: AxisSettings(aggressiveness=1.0, hysteresis=0.0)
    )
    calibration_distance_px: float = 15.0
    calibration_steps: int = 5
    calibration_max_steps: int = 12
    calibration_step_ms: int | None = None
    max_orthogonality_error_deg: float = 30.0
    pixel_scale_arcsec_px: float | None = None
    focal_length_mm: float | None = None
    max_consecutive_errors: int = 10
    retry_delay_s: float = 1.0
    max_retry_delay_s: float = 10.0
    rms_window_steps: int = 1000
    dither_seed: int | None = None

    def __post_init__(self) -> None:
        """Raise ValueError on settings the loop cannot work with."""
        if self.exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")
        if self.search_radius_px <= 0 or self.outlier_px <= 0 or self.reacquire_tolerance_px <= 0:
            raise ValueError("search_radius_px, outlier_px, reacquire_tolerance_px must be > 0")
        if not 0 < self.min_matched_fraction <= 1:
            raise ValueError("min_matched_fraction must be within (0, 1]")
        if self.reselect_after_frames < 1 or self.acquire_frames < 1:
            raise ValueError("reselect_after_frames and acquire_frames must be >= 1")
        if self.calibration_distance_px <= 0 or self.calibration_steps < 2:
            raise ValueError("need calibration_distance_px > 0 and calibration_steps >= 2")
        if self.calibration_max_steps < self.calibration_steps:
            raise ValueError("calibration_max_steps must be >= calibration_steps")
        if self.max_consecutive_errors < 1 or self.retry_delay_s < 0:
            raise ValueError("need max_consecutive_errors >= 1 and retry_delay_s >= 0")
