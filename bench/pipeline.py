"""The whole processing pipeline, Nightowl's beside Siril 1.0.6's, on the same synthetic session.

A session of `processing.synthetic` (bias, darks, flats and dithered, slightly rotated lights
with vignetting, dust, hot pixels, a sky gradient, a faint nebula, satellite trails and
cosmic rays) is written once per size as 16-bit FITS files by `synthetic.write_session`
(uint16 via BZERO 32768, IMAGETYP 'Bias Frame' / 'Dark Frame' / 'Flat Field' / 'Light Frame',
EXPTIME, FILTER, OBJECT, binning, GAIN, CCD-TEMP) in Siril's layout: biases/, darks/, flats/,
lights/.
Then, in fresh processes measured alike (wall time; CPU time, user + sys, and peak RSS
ru_maxrss from wait4; the peaks of the summed RSS of the process tree, sampled every 50 ms,
and of its summed PSS, every 250 ms):

- Nightowl: ``python -m daemon process DATA --out OUT --json --linear-only --reference
  DATA/lights/<first> --no-crop`` (masters, calibration, registration, winsorized integration
  into ``OUT/SYNTH_L.fits``, on Siril's grid: its first light, uncropped); the per-stage
  timings of its JSON summary (and Siril's own per-command times from its log) are printed
  too;
- Nightowl's daemon: the same job (the same options, through ``POST /api/processing/jobs``)
  in a ``nightowl serve`` without devices, started once before the runs and warmed by one
  job: the daemon as a night leaves it, whose jobs are forked from a fork server that has
  the pipeline loaded (its first light started it). Its wall time runs from the POST to the
  job's state "done" (the API polled every 50 ms); with --nightowl-options, only the command
  is measured;
- Siril: ``siril-cli -s pipeline.ssf -d WORK``, the stock mono preprocessing script of Siril
  1.0 (`SIRIL_SCRIPT`: 3 / 3 sigma rejection stacks of bias, flats and darks, winsorized, which
  is what 1.0.6 does when `rej` names no algorithm; flats bias-subtracted, lights calibrated
  with the dark master (bias included) and the flat; global star registration, homography;
  winsorized 3 / 3 stack of the lights with additive + scale normalisation, rescaled to
  [0, 1]), in WORK = a folder of hard links to the dataset, so that Siril's process/ folder
  stays out of the dataset Nightowl reads; skipped with a note when siril-cli is not installed.

Throughput is lights x megapixels / wall seconds (MPf/s). ru_maxrss keeps the larger of the
child's own peak and the RSS its parent had when it forked (Linux copies it across fork and
exec), so this process stays small: generation and analysis run in worker processes.

Tree PSS is the figure for a forked tree. Nightowl's local pool workers are forked from the
job process and share its pages (imported modules, the masters built before the fork)
copy-on-write; tree RSS counts each shared page once per process that maps it, so it
overstates what the tree uses. The proportional set size (Pss in /proc/PID/smaps_rollup)
splits each shared page between the processes that map it, so summed over the tree it counts
the page once. Both are peaks over time of the sum, from the same sampler; PSS is read at
every fifth sample only: reading smaps_rollup walks a process's page tables under its memory
map's lock, which holds up a process that maps and unmaps frames (read every 50 ms, it made
Nightowl's calibrate and register stages 15-30 % slower).

Quality, on both integrated images (analysed in a worker; a 48 px border is left out, which
covers the dithers and the rotation):

- stars: detected with `processing.stars.detect_stars`, and the 150 brightest matched to the
  generator's star list by an affine fit (any reference frame, crop or flip), which gives the
  image's scale: k = median(measured flux / true flux in e-), ADU of the stack per e- of one
  light. FWHM is the median fwhm_px of the matched stars.
- sky noise, e-: over 16 x 16 px blocks, the robust std (1.4826 MAD) of each block, median
  over the sky blocks (block median below the 40th percentile of block medians), divided by
  k. Dividing by a star flux instead of the background makes the figure free of each
  stack's normalisation and pedestal (Siril's -output_norm rescales to [0, 1]): it is the
  noise a star of known e- sees, as a SNR would. Lower is better; under the table, the
  white-noise limit at the frame centre before flat correction. Registration interpolation
  correlates neighbouring pixels and lowers the per-pixel figure, so the noise of the
  16 x 16 block means (from differences of neighbouring sky blocks, times 16 to be
  comparable) is printed as well, which interpolation changes far less.
- sky noise vs truth, e-: the noise of the 16 x 16 block means of the stack minus the
  generator's background (sky gradient + nebula, mapped through the star fit; scale and
  pedestal fitted to it), times 16, over the blocks inside the border that no star reaches.
  The binned noise counts the scene's structure between neighbouring sky blocks as noise too;
  this figure holds noise only (a blur lowers it a little too, as below).
- defect residual: the median of the integrated image on the pixels of the satellite trails and
  cosmic rays (the generator's masks, mapped to the image through the same fit) minus the
  median on a band beside them, in units of the sky noise; ~0 when rejection removed them.
- SNR gain: the white-noise limit of one light at the frame centre over the stack's 16 x 16
  block noise (both in e-): sqrt(N) for a plain mean of N equal lights. Smoothing raises it
  without adding information (a blur spreads each pixel's noise across block edges into the
  neighbouring blocks: it correlates their means and lowers their differences), so
- SNR gain at Siril's FWHM: the same on Nightowl's stack convolved with the Gaussian that
  widens its stars to Siril's FWHM (sigma^2 = (F_siril^2 - F_ours^2) / (8 ln 2); no blur when
  ours are as wide already) compares the two at equal sharpness; Siril's is its SNR gain.

Nightowl's JSON summary is kept as nightowl.json and Siril's log as siril/siril.log beside
each dataset. Each table row is Nightowl, Siril, and their ratio (Siril / Nightowl for times,
so > 1 means Nightowl is faster; Nightowl / Siril for the rest, so < 1 means less memory,
noise or blur, but > 1 more throughput or SNR gain).

    .venv/bin/python bench/pipeline.py [--size tiny,small,large|all] [--runs 1] [--keep DIR]
        [--nightowl-options '--interpolation bicubic --weighting none'] [--no-siril]

small: 2048 x 1536, 30 lights, 300 stars; large: 4144 x 2822, 20 lights, 800 stars; 15 bias,
15 darks and 15 flats each. With --keep DIR the datasets, Siril's work folder and both outputs
stay in DIR (and a dataset already there is reused); otherwise a temporary folder is removed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib import request

REPO = Path(__file__).resolve().parent.parent
SIRIL = "siril-cli"
TARGET, FILTER = "SYNTH", "L"
SUBFOLDERS = ("biases", "darks", "flats", "lights")
BORDER_PX = 48
BLOCK_PX = 16
SKY_PERCENTILE = 40.0
MATCHED_STARS = 150
AT_SIRIL_FWHM = "Nightowl at Siril's FWHM"
# A star's tail below this (e- per pixel of one light) is far below the noise of a block mean.
STAR_TAIL_E = 0.02

SIRIL_SCRIPT = """\
requires 1.0.0

cd biases
convert bias -out=../process
cd ../process
stack bias rej 3 3 -nonorm
cd ..

cd flats
convert flat -out=../process
cd ../process
preprocess flat -bias=bias_stacked
stack pp_flat rej 3 3 -norm=mul
cd ..

cd darks
convert dark -out=../process
cd ../process
stack dark rej 3 3 -nonorm
cd ..

cd lights
convert light -out=../process
cd ../process
preprocess light -dark=dark_stacked -flat=pp_flat_stacked
register pp_light
stack r_pp_light rej w 3 3 -norm=addscale -output_norm -out=../result
cd ..
close
"""


@dataclass(frozen=True)
class Size:
    name: str
    width: int
    height: int
    lights: int
    stars: int
    calibration: int = 15
    trail_every: int = 10

    @property
    def megapixels(self) -> float:
        return self.width * self.height / 1e6


SIZES = {
    "tiny": Size("tiny", 1200, 900, 8, 150, trail_every=4),
    "small": Size("small", 2048, 1536, 30, 300),
    "large": Size("large", 4144, 2822, 20, 800),
}


def session_config(size: Size) -> Any:
    """The generator's settings for `size`: SessionConfig defaults apart from frame counts."""
    from processing import synthetic

    return synthetic.SessionConfig(
        sensor=synthetic.SensorModel(shape=(size.height, size.width)),
        bias_frames=size.calibration,
        dark_frames=size.calibration,
        flat_frames=size.calibration,
        light_frames=size.lights,
        star_count=size.stars,
        trail_every=size.trail_every,
    )


# --- workers (run in their own processes) -----------------------------------------------------


def generate(size: Size, folder: Path) -> None:
    """Write the session's frames (`synthetic.write_session`: Siril's layout and spellings)
    and the truth the analysis needs (each light's transform and mask of trail and
    cosmic-ray pixels)."""
    import numpy as np

    from processing import synthetic

    config = session_config(size)
    trails: dict[str, Any] = {}
    lights = [0]

    def keep_trail(frame: Any, path: Path) -> None:
        if frame.kind != "LIGHT":
            return
        index = lights[0]
        lights[0] += 1
        trails[f"transform_{index}"] = frame.transform
        trails[f"defects_{index}"] = np.argwhere(frame.defects).astype(np.int32)

    synthetic.write_session(folder, config, target=TARGET, filter_name=FILTER, on_frame=keep_trail)
    np.savez_compressed(folder.parent / "truth.npz", **trails)


def analyse(
    size: Size, image_path: Path, truth_path: Path, blur_sigma_px: float = 0.0
) -> dict[str, Any]:
    """Quality figures of one integrated image (see the module docstring), after a Gaussian
    blur of `blur_sigma_px` when it is positive."""
    import numpy as np
    from astropy.io import fits

    from processing import synthetic
    from processing.stars import detect_stars

    with fits.open(image_path) as hdus:
        hdu = next(h for h in hdus if h.data is not None)
        image = np.asarray(hdu.data, dtype=np.float32)
    figures: dict[str, Any] = {"shape": list(image.shape)}
    image = np.squeeze(image)
    if image.ndim != 2:
        figures["error"] = f"not a mono image: shape {image.shape}"
        return figures
    if blur_sigma_px > 0:
        image = _blurred(image, blur_sigma_px)
    height, width = image.shape
    inner = image[BORDER_PX : height - BORDER_PX, BORDER_PX : width - BORDER_PX]
    finite = np.isfinite(inner)
    figures["median"] = float(np.median(inner[finite]))
    figures["nan_fraction"] = float(1.0 - finite.mean())
    noise_px, noise_binned = _block_noise(inner)
    figures["noise_px"], figures["noise_binned_px"] = noise_px, noise_binned

    filled = np.where(finite, inner, np.float32(figures["median"]))
    stars = detect_stars(filled)
    figures["stars_detected"] = len(stars)
    chosen = slice(0, MATCHED_STARS)
    yx = np.column_stack([stars.y[chosen] + BORDER_PX, stars.x[chosen] + BORDER_PX])
    config = session_config(size)
    truth = synthetic.session_stars(config)
    fit = _match_stars(yx, truth.yx)
    if fit is None:
        figures["error"] = "stars do not match the generator's star field"
        figures["fwhm_px"] = float(np.median(stars.fwhm_px)) if len(stars) else None
        return figures
    affine, det_index, truth_index = fit
    figures["stars_matched"] = len(det_index)
    scale = float(np.median(stars.flux[det_index] / truth.flux_e[truth_index]))
    figures["adu_per_e"] = scale
    figures["fwhm_px"] = float(np.median(stars.fwhm_px[det_index]))
    figures["noise_e"] = noise_px / scale
    figures["noise_binned_e"] = noise_binned / scale
    figures["trail_residual_sigma"] = _trail_residual(image, affine, truth_path, noise_px)
    figures.update(_truth_noise(image, affine, config, figures["fwhm_px"]))
    return figures


def _blurred(image: Any, sigma_px: float) -> Any:
    """`image` convolved with a Gaussian of `sigma_px`; non-finite pixels stay non-finite (the
    median stands in for them in the convolution)."""
    import numpy as np
    from scipy import ndimage

    finite = np.isfinite(image)
    filled = np.where(finite, image, np.median(image[finite]))
    return np.where(finite, ndimage.gaussian_filter(filled, sigma_px), np.float32(np.nan))


def _blocks(image: Any) -> Any:
    """The whole 16 x 16 blocks of `image` as (rows, cols, 256)."""
    rows, cols = image.shape[0] // BLOCK_PX, image.shape[1] // BLOCK_PX
    blocks = image[: rows * BLOCK_PX, : cols * BLOCK_PX].reshape(rows, BLOCK_PX, cols, BLOCK_PX)
    return blocks.transpose(0, 2, 1, 3).reshape(rows, cols, BLOCK_PX * BLOCK_PX)


def _block_noise(image: Any) -> tuple[float, float]:
    """Median robust std within 16 x 16 sky blocks, and the noise of the sky blocks' means
    (robust std of neighbouring differences / sqrt 2, times 16), both in image units."""
    import numpy as np

    blocks = _blocks(image)
    valid = np.isfinite(blocks).all(axis=2)
    medians = np.median(blocks, axis=2)
    mad = 1.4826 * np.median(np.abs(blocks - medians[..., None]), axis=2)
    valid &= mad > 0
    sky = valid & (medians < np.percentile(medians[valid], SKY_PERCENTILE))
    noise = float(np.median(mad[sky]))
    means = blocks.mean(axis=2)
    # Each direction's median difference is the sky gradient's step: remove it per direction.
    differences = [
        (means[:, 1:] - means[:, :-1])[sky[:, 1:] & sky[:, :-1]],
        (means[1:] - means[:-1])[sky[1:] & sky[:-1]],
    ]
    diff = np.concatenate([d - np.median(d) for d in differences])
    binned = 1.4826 * float(np.median(np.abs(diff))) / np.sqrt(2.0)
    return noise, binned * BLOCK_PX


def _truth_noise(image: Any, affine: Any, config: Any, fwhm_px: float) -> dict[str, float]:
    """The noise of the 16 x 16 block means of (stack - pedestal) / scale - the generator's
    background (sky gradient + nebula, mapped to the image through the star fit), times 16,
    over the blocks inside the border that no star reaches: {noise_truth_e, sky_adu_per_e};
    empty for a cropped image (the generator's gradient is defined on the full frame).

    Scale and pedestal are fitted to those blocks' pixels: the star scale k is aperture
    photometry (1-2 % off the background's), and 1 % of the nebula alone would exceed the
    noise of a block mean."""
    import numpy as np

    from processing import synthetic

    height, width = image.shape
    if (height, width) != config.sensor.shape:
        return {}
    # image -> reference is yx @ A[:2] + A[2]; as a 3 x 3 matrix, inverted: reference -> image.
    to_image = np.linalg.inv(np.vstack([affine.T, [0.0, 0.0, 1.0]]))
    background = synthetic.sky_gradient(image.shape, config.sky_e, config.sky_slope_yx, to_image)
    background += synthetic.render_nebula(image.shape, synthetic.session_nebula(config), to_image)
    inner = (slice(BORDER_PX, height - BORDER_PX), slice(BORDER_PX, width - BORDER_PX))
    stack, truth = _blocks(image[inner]), _blocks(background[inner])
    # A star's square out to where its profile (the widest seeing or the image's FWHM,
    # whichever is wider, plus 2 px) falls below STAR_TAIL_E rules its blocks out.
    stars = synthetic.session_stars(config)
    sigma_px = max(config.seeing_sigma_px[1], fwhm_px / (8 * np.log(2)) ** 0.5)
    peak_e = stars.flux_e / (2 * np.pi * sigma_px**2)
    radius = sigma_px * np.sqrt(2 * np.log(np.maximum(peak_e / STAR_TAIL_E, 1.0))) + 2.0
    centres = synthetic.apply_transform(to_image, stars.yx) - BORDER_PX
    low = np.clip(np.floor((centres - radius[:, None]) / BLOCK_PX), 0, None).astype(int)
    high = np.clip(np.floor((centres + radius[:, None]) / BLOCK_PX) + 1, 0, None).astype(int)
    clear = np.isfinite(stack).all(axis=2)
    for (y0, x0), (y1, x1) in zip(low, high, strict=True):
        clear[y0:y1, x0:x1] = False
    if clear.sum() < 100:
        return {}
    values, model = stack[clear].ravel().astype(np.float64), truth[clear].ravel()
    design = np.column_stack([model, np.ones_like(model)])
    (scale, pedestal), *_ = np.linalg.lstsq(design, values, rcond=None)
    means = ((stack[clear] - pedestal) / scale - truth[clear]).mean(axis=1)
    noise = 1.4826 * float(np.median(np.abs(means - np.median(means))))
    return {"noise_truth_e": noise * BLOCK_PX, "sky_adu_per_e": float(scale)}


def _match_stars(yx: Any, truth_yx: Any) -> tuple[Any, Any, Any] | None:
    """Affine map image -> reference coordinates from star positions: a vote on offsets (for
    each of the four axis flips), then refits with shrinking tolerance; (matrix 3 x 2, image
    indices, truth indices) of the flip that matches most stars."""
    import numpy as np
    from scipy.spatial import cKDTree

    if len(yx) < 10:
        return None
    tree = cKDTree(truth_yx)
    design = np.column_stack([yx, np.ones(len(yx))])
    best = None
    centre = (yx.min(axis=0) + yx.max(axis=0)) / 2
    for signs in ((1, 1), (-1, 1), (1, -1), (-1, -1)):
        flip = np.array(signs, dtype=float)
        flipped = centre + flip * (yx - centre)
        offsets = (truth_yx[None, :, :] - flipped[:, None, :]).reshape(-1, 2)
        counts, y_edges, x_edges = np.histogram2d(
            offsets[:, 0], offsets[:, 1], bins=128, range=[[-256, 256], [-256, 256]]
        )
        peak_y, peak_x = np.unravel_index(np.argmax(counts), counts.shape)
        shift = np.array([y_edges[peak_y] + 2.0, x_edges[peak_x] + 2.0])
        affine = np.vstack([np.diag(flip), centre * (1 - flip) + shift])
        matched = np.zeros(len(yx), dtype=bool)
        for tolerance in (8.0, 4.0, 2.0, 1.5, 1.5):
            distance, nearest = tree.query(design @ affine)
            matched = distance < tolerance
            if matched.sum() < 10:
                break
            affine, *_ = np.linalg.lstsq(design[matched], truth_yx[nearest[matched]], rcond=None)
        if matched.sum() >= max(20, len(yx) // 2) and (
            best is None or matched.sum() > len(best[1])
        ):
            best = (affine, np.flatnonzero(matched), nearest[matched])
    return best


def _trail_residual(image: Any, affine: Any, truth_path: Path, noise_px: float) -> float | None:
    """Median on the trail and cosmic-ray pixels minus the median on a 3-6 px band beside them,
    in sky noise units; the generator's masks are mapped frame -> reference -> this image."""
    import numpy as np
    from scipy import ndimage

    truth = np.load(truth_path)
    indices = sorted(int(key.split("_")[1]) for key in truth.files if key.startswith("transform"))
    if not indices:
        return None
    # image -> reference is yx @ A[:2] + A[2]; invert it to map reference -> image.
    linear, shift = affine[:2], affine[2]
    inverse = np.linalg.inv(linear)
    trail = np.zeros(image.shape, dtype=bool)
    for index in indices:
        frame_yx = truth[f"defects_{index}"].astype(np.float64)
        to_reference = np.linalg.inv(truth[f"transform_{index}"])
        homogeneous = np.column_stack([frame_yx, np.ones(len(frame_yx))])
        reference = (homogeneous @ to_reference.T)[:, :2]
        target = np.rint((reference - shift) @ inverse).astype(np.int64)
        inside = np.all((target >= 0) & (target < image.shape), axis=1)
        trail[target[inside, 0], target[inside, 1]] = True
    trail = ndimage.binary_closing(trail, iterations=1)
    near = ndimage.binary_dilation(trail, iterations=3)
    band = ndimage.binary_dilation(near, iterations=3) & ~near
    on, beside = image[trail & np.isfinite(image)], image[band & np.isfinite(image)]
    if not len(on) or not len(beside):
        return None
    return float((np.median(on) - np.median(beside)) / noise_px)


# --- measured runs ----------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    peak_rss_gb: float
    tree_rss_gb: float
    tree_pss_gb: float
    returncode: int
    stdout: str
    stderr: str


def measured(command: list[str], cwd: Path) -> Run:
    """Run `command` to completion; wall time, and CPU time and peak RSS from wait4."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        run = _measured(command, cwd, stdout, stderr)
        stdout.seek(0)
        stderr.seek(0)
        run.stdout = stdout.read().decode(errors="replace")
        run.stderr = stderr.read().decode(errors="replace")
    return run


def _measured(command: list[str], cwd: Path, stdout: Any, stderr: Any) -> Run:
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=stdout, stderr=stderr)
    peak_rss, peak_pss = [0], [0]
    done = threading.Event()

    def sample() -> None:
        for count in itertools.count():
            if done.wait(0.05):
                return
            rss, pss = _tree_memory_bytes(process.pid, with_pss=count % 5 == 0)
            peak_rss[0], peak_pss[0] = max(peak_rss[0], rss), max(peak_pss[0], pss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    return Run(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_gb=usage.ru_maxrss * 1024 / 1e9,
        tree_rss_gb=peak_rss[0] / 1e9,
        tree_pss_gb=peak_pss[0] / 1e9,
        returncode=process.returncode,
        stdout="",
        stderr="",
    )


def _tree_memory_bytes(root: int, *, with_pss: bool) -> tuple[int, int]:
    """Summed resident (RSS) and, `with_pss`, proportional (PSS; else 0) memory of `root`
    and its descendants, from /proc; PSS is read from smaps_rollup for the tree's processes
    only (it walks their page tables)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(statm.split()[1]) * page
    total_rss, total_pss, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total_rss += rss.get(pid, 0)
        total_pss += _pss_bytes(pid) if with_pss else 0
        stack.extend(children.get(pid, []))
    return total_rss, total_pss


def _pss_bytes(pid: int) -> int:
    """The process's proportional set size (0 once it has ended)."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    line = next((line for line in rollup.splitlines() if line.startswith("Pss:")), "Pss: 0 kB")
    return int(line.split()[1]) * 1024


def worker(args: list[str]) -> Any:
    """Run this file in worker mode and return its JSON output."""
    command = [sys.executable, __file__, "--worker", *args]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr.strip().splitlines()[-1] if completed.stderr else "")
    return json.loads(completed.stdout or "null")


def dataset(size: Size, root: Path) -> Path:
    """The size's dataset under root, generated unless a complete one is there already."""
    folder = root / size.name / "data"
    stamp = root / size.name / "dataset.json"
    expected = json.dumps(size.__dict__, sort_keys=True)
    complete = stamp.exists() and (root / size.name / "truth.npz").exists()
    if complete and stamp.read_text() == expected:
        print(f"  reusing the dataset in {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    worker(["generate", size.name, str(folder)])
    stamp.write_text(expected)
    frames = size.lights + 3 * size.calibration
    print(
        f"  {frames} frames ({size.lights} lights) of {size.width} x {size.height} uint16 "
        f"written in {time.perf_counter() - start:.0f} s to {folder}"
    )
    return folder


def run_siril(size: Size, data: Path) -> tuple[Run, Path] | None:
    """The stock mono script in a work folder linking to the dataset's subfolders."""
    work = data.parent / "siril"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    # Real folders of hard links: through a linked folder, Siril's `cd` resolves the link and
    # `../process` would land in the dataset, where Nightowl's run would find it.
    for subfolder in SUBFOLDERS:
        (work / subfolder).mkdir()
        for source in sorted((data / subfolder).iterdir()):
            try:
                os.link(source, work / subfolder / source.name)
            except OSError:
                shutil.copy2(source, work / subfolder / source.name)
    (work / "pipeline.ssf").write_text(SIRIL_SCRIPT)
    run = measured([SIRIL, "-s", str(work / "pipeline.ssf"), "-d", str(work)], work)
    result = work / "result.fit"
    (work / "siril.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0 or "Script execution failed" in run.stdout or not result.exists():
        tail = "\n    ".join((run.stdout + run.stderr).strip().splitlines()[-8:])
        print(f"  Siril failed (exit {run.returncode}), log in {work / 'siril.log'}:\n    {tail}")
        return None
    return run, result


def siril_stages(log: str) -> dict[str, float]:
    """Siril's own 'Execution time' of each script command, named by its first two words."""
    commands = [
        line.split()[:2]
        for line in SIRIL_SCRIPT.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    stages: dict[str, float] = {}
    index = -1
    for line in log.splitlines():
        if line.startswith("log: Running command:"):
            index += 1
        elif line.startswith("log: Execution time:") and 0 <= index < len(commands):
            value, unit = line.split(":", 2)[2].split()[:2]
            label = " ".join(commands[index])
            stages[label] = float(value) / (1000.0 if unit.startswith("ms") else 1.0)
    return stages


def run_nightowl(
    size: Size, data: Path, options: list[str]
) -> tuple[Run, Path, dict[str, Any]] | None:
    """`python -m daemon process DATA --out OUT --json [options]` and the image it wrote."""
    out = data.parent / "nightowl"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "daemon", "process", str(data), "--out", str(out), "--json"]
    # Siril's grid: its first light is the reference and nothing is cropped. The same grid
    # makes the noise figures comparable (the block statistics depend on the area).
    first = sorted((data / "lights").iterdir())[0]
    command += ["--linear-only", "--reference", str(first), "--no-crop", *options]
    run = measured(command, REPO)
    if run.returncode != 0:
        tail = "\n    ".join(run.stderr.strip().splitlines()[-6:])
        print(f"  Nightowl failed (exit {run.returncode}):\n    {tail}")
        return None
    try:
        summary = json.loads(run.stdout)
    except json.JSONDecodeError:
        summary = {}
        print("  Nightowl printed no JSON summary on stdout")
    (data.parent / "nightowl.json").write_text(run.stdout)
    result = out / f"{TARGET}_{FILTER}.fits"
    if not result.exists():
        named = [Path(p) for p in _strings(summary) if Path(p).name.startswith(f"{TARGET}_")]
        named = [p for p in named if p.suffix in (".fits", ".fit") and p.exists()]
        found = named or sorted(out.rglob(f"{TARGET}_{FILTER}*.fit*"))
        if not found:
            print(f"  Nightowl wrote no {result.name} in {out}")
            return None
        result = found[0]
    return run, result, summary


def _strings(value: Any) -> list[str]:
    """Every string inside a JSON value (to find output paths whatever the summary's shape)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


class WarmDaemon:
    """A `nightowl serve` without devices, reading the bench's folder, whose jobs start warm
    once it has run one (`warm_up`). Ended with `stop`."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "daemon"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        profile = self.folder / "bare.yaml"
        profile.write_text("name: bench-pier\n")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "NIGHTOWL_PORT": str(port),
            "NIGHTOWL_DATA_DIR": str(self.folder),
            "NIGHTOWL_EQUIPMENT_PROFILE": str(profile),
            "NIGHTOWL_CONNECT_ON_START": "false",
            "NIGHTOWL_PROCESSING_ROOTS": str(root),
            "NIGHTOWL_LIVE_STACK": "false",
            "NIGHTOWL_LOG_LEVEL": "WARNING",
        }
        with (self.folder / "daemon.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daemon", "serve"],
                env=env,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                self._get("/api/health")
                break
            except OSError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self.folder / "daemon.log"
                    raise RuntimeError(f"the daemon did not start; see {log}") from error
                time.sleep(0.2)

    def _get(self, path: str) -> Any:
        with request.urlopen(f"{self.url}{path}", timeout=30) as reply:
            return json.loads(reply.read())

    def job(self, data: Path) -> tuple[float, dict[str, Any]]:
        """Process `data` as `run_nightowl` does; the wall time from the POST to "done", and
        the job."""
        first = sorted((data / "lights").iterdir())[0]
        body = {
            "folder": str(data),
            "linear_only": True,
            "options": {"reference": str(first), "crop": False},
        }
        post = request.Request(
            f"{self.url}/api/processing/jobs",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        start = time.monotonic()
        with request.urlopen(post, timeout=30) as reply:
            job_id = json.loads(reply.read())["id"]
        while (job := self._get(f"/api/processing/jobs/{job_id}"))["state"] not in (
            "done",
            "failed",
        ):
            time.sleep(0.05)
        return time.monotonic() - start, job

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()


def run_daemon_job(daemon: WarmDaemon, data: Path) -> float | None:
    """One job of the warm daemon: its wall time, or None (with a note) when it failed."""
    wall, job = daemon.job(data)
    if job["state"] != "done":
        print(f"  the daemon's job failed: {job.get('error')}")
        return None
    return wall


@dataclass
class Measured:
    """One size's runs so far, for both tools."""

    size: Size
    data: Path
    nightowl: list[Run] = field(default_factory=list)
    sirils: list[Run] = field(default_factory=list)
    daemon_walls: list[float] = field(default_factory=list)
    nightowl_out: Path | None = None
    siril_out: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, list[dict[str, float]]] = field(
        default_factory=lambda: {"Nightowl": [], "Siril": []}
    )


def run_once(
    measured_size: Measured, siril: bool, options: list[str], daemon: WarmDaemon | None
) -> None:
    """One run of Nightowl's command, then its daemon's job, then Siril, on the size's
    dataset."""
    ours = run_nightowl(measured_size.size, measured_size.data, options)
    if ours is not None:
        measured_size.nightowl.append(ours[0])
        measured_size.nightowl_out, measured_size.summary = ours[1], ours[2]
        timings = ours[2].get("timings_s")
        if isinstance(timings, dict):
            measured_size.stages["Nightowl"].append({k: float(v) for k, v in timings.items()})
    if daemon is not None and (wall := run_daemon_job(daemon, measured_size.data)) is not None:
        measured_size.daemon_walls.append(wall)
    if siril:
        theirs = run_siril(measured_size.size, measured_size.data)
        if theirs is not None:
            measured_size.sirils.append(theirs[0])
            measured_size.siril_out = theirs[1]
            measured_size.stages["Siril"].append(siril_stages(theirs[0].stdout))


def report(measured_size: Measured) -> None:
    size = measured_size.size
    print(f"\n{size.name}: {size.width} x {size.height}, {size.lights} lights, {size.stars} stars")
    _print_groups(measured_size.summary)
    truth = measured_size.data.parent / "truth.npz"
    quality = {}
    for name, path in (
        ("Nightowl", measured_size.nightowl_out),
        ("Siril", measured_size.siril_out),
    ):
        if path is None:
            continue
        try:
            quality[name] = worker(["analyse", size.name, str(path), str(truth)])
        except RuntimeError as error:
            print(f"  analysis of {path} failed: {error}")
            continue
        figures = quality[name]
        print(
            f"  {name} output {path.name}: shape {figures['shape']}, median "
            f"{figures.get('median', float('nan')):.6g}, {figures.get('stars_detected', 0)} stars "
            f"({figures.get('stars_matched', 0)} matched), scale "
            f"{figures.get('adu_per_e', float('nan')):.4g} /e- (sky's "
            f"{figures.get('sky_adu_per_e', float('nan')):.4g})"
            + (f"; {figures['error']}" if "error" in figures else "")
        )
    matched = _at_siril_fwhm(size, measured_size.nightowl_out, truth, quality)
    if matched is not None:
        quality[AT_SIRIL_FWHM] = matched
    for name, per_run in measured_size.stages.items():
        _print_stages(name, per_run)
    _print_table(measured_size, quality)


def _at_siril_fwhm(
    size: Size, path: Path | None, truth: Path, quality: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """Nightowl's figures after a Gaussian blur that widens its stars to Siril's FWHM (FWHMs
    of Gaussians add in quadrature: sigma^2 = (F_siril^2 - F_ours^2) / (8 ln 2)); its own
    figures when its stars are as wide already."""
    ours = quality.get("Nightowl", {}).get("fwhm_px")
    theirs = quality.get("Siril", {}).get("fwhm_px")
    if path is None or ours is None or theirs is None:
        return None
    if theirs <= ours:
        print(f"  Nightowl's stars are as wide as Siril's already ({ours:.3f} px): not blurred")
        return quality["Nightowl"]
    sigma_px = math.sqrt((theirs**2 - ours**2) / (8 * math.log(2)))
    try:
        figures: dict[str, Any] = worker(
            ["analyse", size.name, str(path), str(truth), f"{sigma_px:.6f}"]
        )
    except RuntimeError as error:
        print(f"  analysis of {path} blurred by {sigma_px:.3f} px failed: {error}")
        return None
    print(
        f"  Nightowl blurred to Siril's FWHM: Gaussian sigma {sigma_px:.3f} px, FWHM "
        f"{ours:.3f} -> {figures.get('fwhm_px', float('nan')):.3f} px (Siril {theirs:.3f}); "
        f"sky noise vs truth {figures.get('noise_truth_e', float('nan')):.3f} e-"
    )
    return figures


def _print_groups(summary: dict[str, Any]) -> None:
    """What Nightowl's summary says of each group: lights integrated, reference, crop."""
    for group in summary.get("groups") or []:
        rejected = ", ".join(Path(r["path"]).name for r in group.get("rejected") or [])
        print(
            f"  Nightowl {group.get('name')}: {group.get('integrated')} of "
            f"{len(group.get('frames') or [])} lights integrated, reference "
            f"{Path(str(group.get('reference'))).name}, crop {group.get('crop_yx')}"
            + (f"; rejected {rejected}" if rejected else "")
        )
        for note in group.get("notes") or []:
            print(f"    note: {note}")


def _print_stages(name: str, per_run: list[dict[str, float]]) -> None:
    """One line of per-stage seconds, the median over the runs that report the stage."""
    if not per_run or not any(per_run):
        return
    names = list(dict.fromkeys(stage for run in per_run for stage in run))
    medians = {n: statistics.median(run[n] for run in per_run if n in run) for n in names}
    line = ", ".join(f"{stage} {seconds:.1f}" for stage, seconds in medians.items())
    print(f"  {name} stages, s: {line} (sum {sum(medians.values()):.1f})")


def _print_table(measured_size: Measured, quality: dict[str, dict[str, Any]]) -> None:
    size, nightowl, sirils = measured_size.size, measured_size.nightowl, measured_size.sirils
    daemon = statistics.median(measured_size.daemon_walls) if measured_size.daemon_walls else None

    def median(runs: list[Run], key: str) -> float | None:
        return statistics.median(getattr(run, key) for run in runs) if runs else None

    def mpf(runs: list[Run]) -> float | None:
        wall = median(runs, "wall_s")
        return size.lights * size.megapixels / wall if wall else None

    def q(name: str, key: str) -> float | None:
        value = quality.get(name, {}).get(key)
        return float(value) if value is not None else None

    config = session_config(size)
    single = (
        config.sky_e
        + config.sensor.dark_current_e_s * config.exposure_s
        + config.sensor.read_noise_e**2
    ) ** 0.5

    def gain(name: str) -> float | None:
        binned = q(name, "noise_binned_e")
        return single / binned if binned else None

    rows: list[tuple[str, float | None, float | None, bool]] = [
        ("wall, s", median(nightowl, "wall_s"), median(sirils, "wall_s"), True),
        ("wall, daemon's job, s", daemon, median(sirils, "wall_s"), True),
        ("CPU, s", median(nightowl, "cpu_s"), median(sirils, "cpu_s"), True),
        ("peak RSS, GB", median(nightowl, "peak_rss_gb"), median(sirils, "peak_rss_gb"), False),
        ("tree RSS, GB", median(nightowl, "tree_rss_gb"), median(sirils, "tree_rss_gb"), False),
        ("tree PSS, GB", median(nightowl, "tree_pss_gb"), median(sirils, "tree_pss_gb"), False),
        ("MPf/s", mpf(nightowl), mpf(sirils), False),
        ("sky noise, e-", q("Nightowl", "noise_e"), q("Siril", "noise_e"), False),
        ("binned noise, e-", q("Nightowl", "noise_binned_e"), q("Siril", "noise_binned_e"), False),
        (
            "sky noise vs truth, e-",
            q("Nightowl", "noise_truth_e"),
            q("Siril", "noise_truth_e"),
            False,
        ),
        ("SNR gain", gain("Nightowl"), gain("Siril"), False),
        ("SNR gain at Siril's FWHM", gain(AT_SIRIL_FWHM), gain("Siril"), False),
        ("FWHM, px", q("Nightowl", "fwhm_px"), q("Siril", "fwhm_px"), False),
        (
            "defect resid., sigma",
            q("Nightowl", "trail_residual_sigma"),
            q("Siril", "trail_residual_sigma"),
            False,
        ),
    ]
    print(f"  {'':24s} {'Nightowl':>10s} {'Siril':>10s} {'ratio':>8s}")
    for label, ours, theirs, siril_over_ours in rows:
        ratio = None
        if ours is not None and theirs is not None and ours and theirs:
            ratio = theirs / ours if siril_over_ours else ours / theirs
        print(f"  {label:24s} {_cell(ours):>10s} {_cell(theirs):>10s} {_cell(ratio, 2):>8s}")
    print(
        f"  (ratio: Siril / Nightowl for wall and CPU, Nightowl / Siril below; white-noise limit "
        f"of one light at the centre, before flat correction: {single:.2f} e-, "
        f"sqrt(N) = {size.lights**0.5:.2f})"
    )


def _cell(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"


def main(args: argparse.Namespace) -> None:
    siril = shutil.which(SIRIL) is not None and not args.no_siril
    options = shlex.split(args.nightowl_options)
    if options:
        print(f"nightowl process options: {' '.join(options)}")
    if args.no_siril:
        print("Siril left out (--no-siril)")
    elif not siril:
        print(f"{SIRIL} was not found: printing Nightowl's figures only")
    else:
        version = subprocess.run([SIRIL, "--version"], capture_output=True, text=True)
        print(f"Siril: {version.stdout.strip()} ({shutil.which(SIRIL)})")
    print(f"{os.cpu_count()} CPUs; {args.runs} run(s) each, interleaved over the sizes; medians")
    names = list(SIZES) if args.size == "all" else args.size.split(",")
    unknown = [name for name in names if name not in SIZES]
    if unknown:
        raise SystemExit(f"--size: unknown {unknown}; choose from {list(SIZES)} or all")
    with tempfile.TemporaryDirectory(prefix="nightowl-pipeline-") as tmp:
        root = args.keep or Path(tmp)
        measured_sizes = []
        for name in names:
            (root / name).mkdir(parents=True, exist_ok=True)
            print(f"{name}:")
            measured_sizes.append(Measured(SIZES[name], dataset(SIZES[name], root)))
        daemon = None if options else WarmDaemon(root)
        try:
            if daemon is not None:
                print("  the daemon's warm-up job", flush=True)
                run_daemon_job(daemon, measured_sizes[0].data)
            for run in range(args.runs):
                for measured_size in measured_sizes:
                    print(f"  run {run + 1}: {measured_size.size.name}", flush=True)
                    run_once(measured_size, siril, options, daemon)
        finally:
            if daemon is not None:
                daemon.stop()
        for measured_size in measured_sizes:
            report(measured_size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", default="all", help=f"comma-separated, of {', '.join(SIZES)}; or all"
    )
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="keep datasets and outputs in this folder")
    parser.add_argument(
        "--nightowl-options",
        default="",
        help="more options for nightowl process, e.g. '--interpolation bicubic --weighting none'",
    )
    parser.add_argument("--no-siril", action="store_true", help="run Nightowl alone")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.worker:
        task, size_name, *paths = arguments.worker
        if task == "generate":
            generate(SIZES[size_name], Path(paths[0]))
            print("null")
        else:
            blur_sigma_px = float(paths[2]) if len(paths) > 2 else 0.0
            figures = analyse(SIZES[size_name], Path(paths[0]), Path(paths[1]), blur_sigma_px)
            print(json.dumps(figures))
    else:
        main(arguments)
