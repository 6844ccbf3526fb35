"""A real night: `nightowl process` on ten Seestar S50 frames of M 94, beside Siril's result.

The frames (one-shot colour, Bayer GRBG, 10 s, no calibration frames) live in the shared
real-data folder, outside the repository. Nightowl's run integrates, finishes with the
default recipe and writes the picture; when `siril-cli` is installed, the same frames go
through Siril's own OSC preprocessing script (debayer, register, stack with winsorized
rejection, autostretch; Siril 1.2 or later) and its picture is written beside ours for a
person to compare.
Prints wall times, how many lights each kept, and where the pictures are.

    .venv/bin/python bench/real_seestar.py [--frames DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_FRAMES = (
    Path(__file__).resolve().parents[1].parent / "shared/realdata/seestar/M94_night1_2025-03-26"
)

_SIRIL_SCRIPT = """requires 1.2.0
setext fit
convert light -out=../process -debayer
cd ../process
register light_
stack r_light_ rej w 3 3 -norm=addscale -output_norm -out=../siril_result
cd ..
load siril_result
autostretch
savejpg siril_result 92
"""


def run_nightowl(frames: Path, out: Path) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "process", str(frames), "--out", str(out), "--json"],
        check=False,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"nightowl process failed:\n{done.stderr[-2000:]}")
    summary: dict[str, object] = json.loads(done.stdout)
    return seconds, summary


def run_siril(frames: Path, out: Path) -> float | None:
    siril = shutil.which("siril-cli")
    if siril is None:
        return None
    work = out / "siril"
    light = work / "light"
    light.mkdir(parents=True, exist_ok=True)
    for frame in sorted(frames.glob("*.fit")):
        shutil.copy(frame, light / frame.name.replace(" ", "_"))
    (work / "process").mkdir(exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [siril, "-d", str(light), "-s", "-"],
        input=_SIRIL_SCRIPT,
        text=True,
        check=False,
        capture_output=True,
    )
    if done.returncode != 0:
        # Siril 1.0 has no `autostretch` in scripts (the script asks for 1.2): say so, and why.
        log = [line[4:].strip() for line in done.stdout.splitlines() if line.startswith("log:")]
        reasons = [line for line in log if "requires" in line or "Error" in line] or log[-3:]
        print("siril-cli failed: " + " / ".join(reasons))
        return None
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES)
    parser.add_argument("--out", type=Path, help="where the pictures go (default: a temp dir)")
    args = parser.parse_args()
    if not args.frames.is_dir():
        raise SystemExit(f"{args.frames}: no such folder (the shared real-data folder)")
    out = args.out or Path(tempfile.mkdtemp(prefix="nightowl-seestar-"))
    seconds, summary = run_nightowl(args.frames, out / "nightowl")
    groups = summary["groups"]
    assert isinstance(groups, list)
    for group in groups:
        print(f"nightowl: {group['name']}: {group['integrated']} of {len(group['frames'])} lights")
        for warning in group.get("warnings", []):
            print(f"  warning: {warning}")
    for picture in summary.get("finished", []):  # type: ignore[attr-defined]
        outputs = picture.get("outputs", {})
        print(f"  picture {outputs.get('jpeg')}")
        for note in picture.get("notes", []):
            print(f"  note: {note}")
    print(f"nightowl process (stack + default recipe): {seconds:.1f} s")
    siril_seconds = run_siril(args.frames, out)
    if siril_seconds is None:
        print("no Siril picture to compare (siril-cli 1.2 or later is needed)")
    else:
        print(f"siril-cli (OSC preprocessing + autostretch): {siril_seconds:.1f} s")
        print(f"  picture {out / 'siril' / 'siril_result.jpg'}")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
