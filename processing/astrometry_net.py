"""astrometry.net's ``solve-field``: `processing.solve`'s engine for fields too small for its own
catalog (under ~0.7-1 deg) or of unknown scale, and its second opinion, when installed.

Debian packages it as ``astrometry.net`` plus index packages; ``make solver`` installs it with
the Tycho-2 indexes ``astrometry-data-tycho2-07`` to ``-19``, whose quads of 22 arcmin and up
solve fields from ~0.4 deg wide (a 0.7 x 1.3 deg Seestar frame solves with no scale in ~9 s;
0.25-0.32 deg fields do not solve). solve-field finds them through ``add_path
/usr/share/astrometry`` and ``autoindex`` in ``/etc/astrometry.cfg``. Nightowl never requires
it. Two facts shape this module: solve-field does not honour ``--cpulimit`` promptly (a sparse
field can run for minutes), so it runs in its own process group that is killed on our own
wall-clock deadline; and ``--no-remove-lines --uniformize 0`` halve its time.

Only the matched star pairs are read back (the ``.corr`` table); the caller fits its own WCS
to them, so both engines report a WCS and a residual of the same kind.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from processing.io import encode_fits

log = logging.getLogger(__name__)

SOLVE_FIELD = "solve-field"
# Frames wider than this are shrunk by solve-field before star extraction (--downsample): its
# source extraction time grows with the pixel count, and stars in such frames span pixels.
_DOWNSAMPLE_ABOVE_PX = 2000


class AstrometryNetError(RuntimeError):
    """solve-field gave no solution; `reason` is "not_installed", "timeout", "no_match" or
    "failed" (it crashed or wrote unreadable output: its log tail is in the message)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class StarMatches:
    """Image stars (0-based pixel centres, x = column) paired with catalog positions (deg)."""

    x_px: npt.NDArray[np.float64]
    y_px: npt.NDArray[np.float64]
    ra_deg: npt.NDArray[np.float64]
    dec_deg: npt.NDArray[np.float64]


def available() -> bool:
    """Whether ``solve-field`` is on PATH."""
    return shutil.which(SOLVE_FIELD) is not None


def match_stars(
    image: npt.NDArray[np.generic],
    *,
    scale_low_arcsec_px: float | None = None,
    scale_high_arcsec_px: float | None = None,
    hint_deg: tuple[float, float, float] | None = None,
    timeout_s: float,
) -> StarMatches:
    """Run solve-field on `image` (axes y, x) and return the star pairs it matched.

    With both scales None the search is scale-free (every index, as solve-field does with no
    hint): seconds for a ~1 deg field, up to `timeout_s` for one it cannot solve. Frames wider
    than 2000 px are downsampled 2x or more. `hint_deg` is (ra, dec, radius) to restrict the
    search. Raises ValueError when only one scale is given, `AstrometryNetError` otherwise; the
    process group is killed when `timeout_s` of wall time has passed.
    """
    if (scale_low_arcsec_px is None) != (scale_high_arcsec_px is None):
        raise ValueError("give both scale bounds, or neither for a scale-free search")
    executable = shutil.which(SOLVE_FIELD)
    if executable is None:
        raise AstrometryNetError("not_installed", "astrometry.net's solve-field is not on PATH")
    data = image if image.dtype in (np.uint16, np.float32) else image.astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="nightowl-solve-field-") as tmp:
        folder = Path(tmp)
        frame = folder / "frame.fits"
        frame.write_bytes(encode_fits(data, []))
        command = [
            executable,
            str(frame),
            "--dir", str(folder),
            "--overwrite",
            "--no-plots",
            "--no-verify",
            "--no-remove-lines",
            "--uniformize", "0",
            "--crpix-center",
            "--new-fits", "none",
            "--rdls", "none",
            "--match", "none",
            "--index-xyls", "none",
            "--temp-axy",
            "--corr", str(folder / "frame.corr"),
            "--solved", str(folder / "frame.solved"),
            "--cpulimit", str(max(1, int(timeout_s))),
        ]  # fmt: skip
        if scale_low_arcsec_px is not None and scale_high_arcsec_px is not None:
            command += [
                "--scale-units", "arcsecperpix",
                "--scale-low", f"{scale_low_arcsec_px:.4f}",
                "--scale-high", f"{scale_high_arcsec_px:.4f}",
            ]  # fmt: skip
        if (downsample := math.ceil(max(image.shape) / _DOWNSAMPLE_ABOVE_PX)) > 1:
            command += ["--downsample", str(downsample)]
        if hint_deg is not None:
            ra, dec, radius = hint_deg
            command += ["--ra", f"{ra:.6f}", "--dec", f"{dec:.6f}", "--radius", f"{radius:.4f}"]
        _run(command, folder / "solve-field.log", timeout_s)
        if not (folder / "frame.solved").exists():
            raise AstrometryNetError("no_match", "solve-field found no solution")
        return _read_corr(folder / "frame.corr", folder / "solve-field.log")


def _run(command: list[str], log_path: Path, timeout_s: float) -> None:
    """Run `command` in a new session (its own process group); kill the group at the deadline."""
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AstrometryNetError(
                "timeout", f"solve-field gave no answer within {timeout_s:.0f} s; stopped it"
            ) from None
        finally:
            if process.returncode is None:
                _kill_group(process)
    log.debug("solve-field exited %s after %.1f s", process.returncode, time.monotonic() - started)
    if process.returncode != 0:
        raise AstrometryNetError(
            "failed", f"solve-field exited with {process.returncode}: {_tail(log_path)}"
        )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _read_corr(path: Path, log_path: Path) -> StarMatches:
    """The ``.corr`` table: FITS 1-based field_x/field_y and the index stars' index_ra/dec."""
    try:
        table = fits.getdata(path, 1)
        return StarMatches(
            x_px=np.asarray(table["field_x"], dtype=np.float64) - 1.0,
            y_px=np.asarray(table["field_y"], dtype=np.float64) - 1.0,
            ra_deg=np.asarray(table["index_ra"], dtype=np.float64),
            dec_deg=np.asarray(table["index_dec"], dtype=np.float64),
        )
    except (OSError, KeyError, IndexError, TypeError) as e:
        raise AstrometryNetError(
            "failed", f"cannot read solve-field's matches {path.name}: {e}; {_tail(log_path)}"
        ) from e


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:])
