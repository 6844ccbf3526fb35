"""Registration on seeded synthetic star fields with known transforms.

Stars are Gaussians integrated over each pixel at exactly known positions (so their true
centroids are known to ~1e-6 px), on a sky with a gradient, with Poisson and read noise;
every frame is rendered directly at its transformed positions, so the truth does not depend
on any resampling. Accuracy is the largest distance, over the corners and centre of the
frame, between where the fitted and the true transforms put a reference pixel.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from processing import synthetic
from processing.register import (
    Interpolation,
    Motion,
    RegistrationConfig,
    RegistrationError,
    Transform,
    _lanczos3_warp,
    common_area,
    crop_box,
    register,
    star_positions,
    valid_area,
    warp,
)
from processing.stars import detect_stars

SHAPE = (300, 400)
F64 = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def field() -> synthetic.StarField:
    rng = np.random.default_rng(20)
    return synthetic.random_star_field(rng, SHAPE, 90, (2e4, 5e5), margin_px=4)


def render(
    field: synthetic.StarField, matrix: F64, seed: int, sigma_px: float = 1.8
) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    scene = synthetic.sky_gradient(SHAPE, 600.0, (0.05, -0.1))
    synthetic.render_stars(
        SHAPE, synthetic.apply_transform(matrix, field.yx), field.flux_e, sigma_px, scene
    )
    return (rng.poisson(scene) + rng.normal(0.0, 5.0, SHAPE)).astype(np.float32)


@pytest.fixture(scope="module")
def reference_yx(field: synthetic.StarField) -> F64:
    return star_positions(detect_stars(render(field, np.eye(3), seed=0)))


@pytest.mark.parametrize(
    ("shift_yx", "rotation_deg"),
    [
        ((0.37, -0.81), 0.0),
        ((12.37, -8.81), 0.5),
        ((-20.2, 15.6), -2.0),
        ((3.3, 4.4), 30.0),
        ((1.25, -2.5), 180.0),  # a meridian flip
    ],
)
def test_known_shifts_and_rotations_are_recovered_to_002_px(
    field: synthetic.StarField,
    reference_yx: F64,
    shift_yx: tuple[float, float],
    rotation_deg: float,
) -> None:
    truth = synthetic.dither(SHAPE, shift_yx, rotation_deg)
    frame_yx = star_positions(detect_stars(render(field, truth, seed=1)))
    registration = register(frame_yx, reference_yx)
    error = registration.transform.max_distance_px(Transform(truth), SHAPE)
    # The target: hundredths of a pixel anywhere on the frame.
    assert error < 0.02, f"{error:.4f} px"
    assert registration.matched >= 40
    np.testing.assert_allclose(registration.transform.scale, 1.0, atol=1e-4)
    angle_error = (registration.transform.rotation_deg - rotation_deg + 180.0) % 360.0 - 180.0
    assert abs(angle_error) < 0.005


def test_affine_motion_recovers_shear_and_unequal_scales(
    field: synthetic.StarField, reference_yx: F64
) -> None:
    truth = synthetic.dither(SHAPE, (4.2, -6.1), 1.0) @ np.array(
        [[1.002, 0.001, 0.0], [-0.0005, 0.999, 0.0], [0.0, 0.0, 1.0]]
    )
    frame_yx = star_positions(detect_stars(render(field, truth, seed=2)))
    affine = register(frame_yx, reference_yx, RegistrationConfig(motion=Motion.AFFINE))
    assert affine.transform.max_distance_px(Transform(truth), SHAPE) < 0.03
    # A similarity cannot follow the shear: its residual grows.
    similar = register(frame_yx, reference_yx, RegistrationConfig(motion=Motion.SIMILARITY))
    assert similar.rms_px > affine.rms_px


def test_homography_follows_a_perspective_tilt(
    field: synthetic.StarField, reference_yx: F64
) -> None:
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2e-5, -3e-5, 1.0]])
    truth = synthetic.dither(SHAPE, (3.1, -2.2), 0.4) @ tilt
    frame_yx = star_positions(detect_stars(render(field, truth, seed=4)))
    config = RegistrationConfig(motion=Motion.HOMOGRAPHY)
    homography = register(frame_yx, reference_yx, config)
    assert homography.transform.max_distance_px(Transform(truth), SHAPE) < 0.03
    warped = warp(render(field, truth, seed=5), homography.transform)
    assert warped.valid[50:250, 50:350].all()


def test_unrelated_fields_and_sparse_frames_are_refused(reference_yx: F64) -> None:
    rng = np.random.default_rng(21)
    other = synthetic.random_star_field(rng, SHAPE, 90, (2e4, 5e5), margin_px=4)
    with pytest.raises(RegistrationError):
        register(other.yx, reference_yx)
    with pytest.raises(RegistrationError):
        register(reference_yx[:3], reference_yx)


@pytest.mark.parametrize("interpolation", list(Interpolation))
def test_resampling_puts_the_frame_back_on_the_reference_grid(
    field: synthetic.StarField, interpolation: Interpolation
) -> None:
    truth = synthetic.dither(SHAPE, (5.43, -3.71), 0.7)
    reference = synthetic.render_stars(SHAPE, field.yx, field.flux_e, 1.8)
    moved = synthetic.render_stars(
        SHAPE, synthetic.apply_transform(truth, field.yx), field.flux_e, 1.8
    )
    warped = warp(moved, Transform(truth), interpolation=interpolation)
    valid = warped.valid
    error = np.sqrt(np.mean((warped.image[valid] - reference[valid]) ** 2)) / reference.max()
    # Measured rms errors (bench/register.py): Lanczos 2e-4 of a star's peak, bicubic 7e-4;
    # bilinear interpolation would be ~5e-3.
    limit = 1e-3 if interpolation is Interpolation.BICUBIC else 4e-4
    assert error < limit
    assert np.isnan(warped.image[~valid]).all()
    assert np.isfinite(warped.image[valid]).all()
    # The frame moved by ~6 px and turned: its edges are not covered, its centre is.
    assert not valid[:, :3].any()
    assert valid[100:200, 100:300].all()


@pytest.mark.parametrize("interpolation", [Interpolation.LANCZOS4, Interpolation.LANCZOS3])
@pytest.mark.parametrize("rotation_deg", [0.7, -3.0, 20.0, 180.0])
def test_lanczos_is_as_exact_in_two_passes_and_in_one(
    field: synthetic.StarField, rotation_deg: float, interpolation: Interpolation
) -> None:
    """Dithers and meridian flips (within 6 degrees of 0 or 180) go through the two 1-D
    passes, other turns through one pass (OpenCV's for Lanczos-4, an exact kernel for
    Lanczos-3): all within Lanczos' measured error."""
    truth = synthetic.dither(SHAPE, (2.37, 1.61), rotation_deg)
    reference = synthetic.render_stars(SHAPE, field.yx, field.flux_e, 1.8)
    moved = synthetic.render_stars(
        SHAPE, synthetic.apply_transform(truth, field.yx), field.flux_e, 1.8
    )
    warped = warp(moved, Transform(truth), interpolation=interpolation)
    valid = warped.valid
    assert valid.mean() > 0.3
    error = np.sqrt(np.mean((warped.image[valid] - reference[valid]) ** 2)) / reference.max()
    assert error < 4e-4
    assert np.isnan(warped.image[~valid]).all()
    assert valid_area(SHAPE, Transform(truth), interpolation=interpolation).tolist() == (
        valid.tolist()
    )


@pytest.mark.parametrize("rotation_deg", [0.7, -3.0, 180.0])
def test_lanczos3_in_two_passes_matches_its_exact_kernel(
    field: synthetic.StarField, rotation_deg: float
) -> None:
    """The two passes' weight table (1/1024 px steps) and 1-D passes stay an order of
    magnitude below the kernel's own error (~2e-4 of a star's peak, measured)."""
    truth = Transform(synthetic.dither(SHAPE, (2.37, 1.61), rotation_deg))
    moved = synthetic.render_stars(
        SHAPE, synthetic.apply_transform(truth.matrix, field.yx), field.flux_e, 1.8
    )
    two_pass = warp(moved, truth, interpolation=Interpolation.LANCZOS3, clamp=None)
    exact = _lanczos3_warp(moved.astype(np.float32), truth, SHAPE)
    valid = two_pass.valid
    difference = two_pass.image[valid] - exact[valid]
    assert float(np.sqrt(np.mean(difference**2))) < 4e-5 * float(moved.max())


@pytest.mark.parametrize("interpolation", list(Interpolation))
def test_whole_pixel_shifts_resample_exactly(interpolation: Interpolation) -> None:
    image = np.random.default_rng(22).normal(0.0, 1.0, (40, 50)).astype(np.float32)
    shift = Transform(np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]))
    warped = warp(image, shift, interpolation=interpolation)
    # Output (y, x) reads the frame at (y + 3, x - 2); every kernel weight but one is 0.
    np.testing.assert_allclose(
        warped.image[10:30, 10:40],
        image[13:33, 8:38],
        atol=1e-5 if interpolation != Interpolation.LANCZOS3 else 1e-6,
    )


def test_clamping_stops_ringing_around_a_cosmic_ray() -> None:
    sky = np.full((40, 40), 100.0, dtype=np.float32)
    sky[20, 20] = 10_000.0
    half_pixel = Transform(np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]))
    ringing = warp(sky, half_pixel, clamp=None).image
    clamped = warp(sky, half_pixel).image
    # Lanczos lobes of a 9,900 ADU spike reach ~100 ADU below the sky; the clamp keeps every
    # pixel within its 2 x 2 source cell's range (widened by half of it) instead.
    assert float(np.nanmin(ringing)) < 50.0
    assert float(np.nanmin(clamped)) == 100.0
    assert float(np.nanmax(clamped)) > 2_000.0


def test_valid_area_matches_the_warp() -> None:
    transform = Transform(synthetic.dither(SHAPE, (4.4, -6.6), 1.1))
    image = np.zeros(SHAPE, dtype=np.float32)
    for interpolation in Interpolation:
        warped = warp(image, transform, interpolation=interpolation)
        np.testing.assert_array_equal(
            valid_area(SHAPE, transform, interpolation=interpolation), warped.valid
        )


def test_auto_crop_finds_the_area_every_frame_covers() -> None:
    transforms = [
        synthetic.dither(SHAPE, shift, rotation)
        for shift, rotation in [((0.0, 0.0), 0.0), ((6.5, -4.2), 0.8), ((-5.1, 7.7), -1.2)]
    ]
    image = np.ones(SHAPE, dtype=np.float32)
    masks = (warp(image, Transform(matrix)).valid for matrix in transforms)
    common = common_area(masks)
    rows, cols = crop_box(common)
    assert common[rows, cols].all()
    # The crop loses the dither margins (<= ~8 px plus rotation wedges and kernel reach of
    # 5 px) on each side, and no more than 20 px.
    assert 0 < rows.start <= 20
    assert SHAPE[0] - 20 <= rows.stop < SHAPE[0]
    assert 0 < cols.start <= 20
    assert SHAPE[1] - 20 <= cols.stop < SHAPE[1]


def test_crop_box_of_a_ragged_mask_is_still_all_valid() -> None:
    """Pixel raggedness on the boundary breaks convexity by a pixel here and there."""
    mask = np.zeros((50, 60), dtype=bool)
    mask[5:45, 4:56] = True
    mask[5, 20] = mask[30, 55] = mask[44, 10] = False
    rows, cols = crop_box(mask)
    assert mask[rows, cols].all()
    assert (rows.stop - rows.start) * (cols.stop - cols.start) >= 0.85 * 40 * 52


def test_inputs_are_never_modified(field: synthetic.StarField, reference_yx: F64) -> None:
    image = render(field, np.eye(3), seed=3)
    copy, stars_copy = image.copy(), reference_yx.copy()
    register(reference_yx, reference_yx)
    for interpolation in Interpolation:
        warp(
            image, Transform(synthetic.dither(SHAPE, (1.5, 2.5), 0.3)), interpolation=interpolation
        )
    np.testing.assert_array_equal(image, copy)
    np.testing.assert_array_equal(reference_yx, stars_copy)
