"""The soak in short (`bench/soak.py` runs it for hours): kill -9 the daemon during runs, let
the next start resume them, and find every frame on disk with its row, no partial file, no
process left behind and the daemon's memory bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
MAX_RSS_MB = 1024  # measured: ~380 MB at the first start, ~280 MB after


def test_a_short_soak_of_kills_and_resumes_loses_and_leaks_nothing(
    tmp_path: Path, catalog_cache: Path
) -> None:
    data = tmp_path / "soak"
    result = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--minutes=0.9",
            "--seed=3",
            "--lights=6",
            "--kill-after-s",
            "2",
            "8",
            f"--max-rss-mb={MAX_RSS_MB}",
            f"--cache-dir={catalog_cache}",
            f"--data-dir={data}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = (data / "daemon.log").read_text(errors="replace")[-5000:] if data.exists() else ""
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-3000:]}\n{log}"
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["problems"] == []
    assert figures["kills"] >= 2
    assert figures["runs_completed"] >= 1
    assert figures["frame_rows"] == figures["frames_on_disk"] >= 6
    assert figures["peak_rss_mb"] < MAX_RSS_MB
