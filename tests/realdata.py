"""Where the real-world material from other people lives: ``../shared/realdata`` beside the
repository (its README says what and from whom). Tests that read it skip with its path as the
reason when it is absent; a synthetic test covers the same feature."""

from __future__ import annotations

from pathlib import Path

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
