"""The start-up scan of the frames folder on files other programs wrote there."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Frame
from daemon.frame_records import register_unrecorded_files
from daemon.store import FrameStore
from sequences.frames import FrameType


def write(path: Path, **cards: str | int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = fits.Header()
    for key, value in cards.items():
        header[key.replace("_", "-")] = value
    fits.PrimaryHDU(np.zeros((8, 12), dtype=np.uint16), header).writeto(path)


def test_other_programs_spellings_are_recorded_and_unreadable_files_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    store = FrameStore(tmp_path / "frames")
    write(
        store.root / "sgp" / "bias_001.fits", IMAGETYP="Bias Frame", DATE_OBS="2026-12-01T20:00:00"
    )
    write(store.root / "maxim" / "dark.fits", IMAGETYP="Dark Frame", DATE_OBS="2026-12-01T20:01:00")
    write(store.root / "odd" / "no_date.fits", IMAGETYP="LIGHT")
    write(store.root / "odd" / "sky_map.fits", IMAGETYP="Sky Map", DATE_OBS="2026-12-01T20:02:00")
    # A colour camera read out from column 1: pixel (0, 0) is green, the cell is GRBG.
    light = {"IMAGETYP": "LIGHT", "DATE_OBS": "2026-12-01T20:03:00", "BAYERPAT": "RGGB"}
    write(store.root / "osc" / "light.fits", **light, XBAYROFF=1)
    write(store.root / "odd" / "cygm.fits", **{**light, "BAYERPAT": "CYGM"})

    result = register_unrecorded_files(engine, store, "simulators", UTC)

    assert len(result.unregistered) == 6
    with Session(engine) as db:
        recorded = {f.path: (f.frame_type, f.bayer_pattern) for f in db.scalars(select(Frame))}
    assert recorded == {
        "sgp/bias_001.fits": (FrameType.BIAS, None),
        "maxim/dark.fits": (FrameType.DARK, None),
        "osc/light.fits": (FrameType.LIGHT, "GRBG"),
    }
    skipped = [r.getMessage() for r in caplog.records if "left without a row" in r.getMessage()]
    assert len(skipped) == 3
    assert any("no_date.fits" in m and "DATE-OBS" in m for m in skipped), skipped
    assert any("'Sky Map'" in m for m in skipped), skipped
    assert any("cygm.fits" in m and "BAYERPAT 'CYGM'" in m for m in skipped), skipped
    engine.dispose()
