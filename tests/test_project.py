"""The project's shape: its packages, its deployment file, its command line."""

from __future__ import annotations

from pathlib import Path

import daemon

ROOT = Path(__file__).resolve().parent.parent


def test_daemon_package_is_this_repository_not_python_daemon() -> None:
    """PyPI's python-daemon installs an import package named `daemon` too."""
    assert Path(daemon.__file__).resolve().parent == ROOT / "daemon"


def test_dockerfile_runs_what_make_run_runs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    makefile = (ROOT / "Makefile").read_text()
    assert "RUN make install" in dockerfile
    assert 'CMD ["nightowl", "serve"]' in dockerfile
    assert "\t$(BIN)/nightowl serve" in makefile
    # Everything the image runs from the project is copied in.
    copied = {line.split()[1] for line in dockerfile if line.startswith("COPY ")}
    assert {"daemon", "drivers", "sequences", "processing"} <= copied
