# Nightowl: `make run` starts the daemon (with simulated equipment by default), `make test` checks it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The optional small-field solver: astrometry.net's solve-field with Debian's Tycho-2 index
# files (quads of 22 arcmin and up: fields from ~0.4 deg; ~300 MB), for fields too small for
# Nightowl's own solver (under ~0.7-1 deg).
SOLVER_PACKAGES := astrometry.net astrometry-data-tycho2-07-littleendian \
	astrometry-data-tycho2-08-littleendian astrometry-data-tycho2-09-littleendian \
	astrometry-data-tycho2-10-19-littleendian

.PHONY: install browser solver database run sim test lint typecheck contracts pytest bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

# The web UI's tests drive Debian's Chromium through Playwright (no browser download).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# Installs only the missing packages: quick when all are present.
solver:
	@missing=$$(for p in $(SOLVER_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The database tests also run against PostgreSQL: a throwaway server (Debian's `postgresql`)
# the test fixtures start on a temporary data directory and port.
database:
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql)

run: install
	$(BIN)/nightowl serve

sim: install
	$(BIN)/nightowl sim

test: lint typecheck contracts pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

contracts: install
	$(BIN)/lint-imports

# Two workers, a test file each at a time: most tests wait on the simulators' real-time
# exposures, so this halves the wall time; each worker starts its own simulator. (Three were
# no faster on a fresh clone, 18.5-19 min against 18.4, and tests that wait on real time
# failed in some of their runs on a busy machine.) The solver's small-field tests run
# solve-field, so the test path installs it. The slowest tests are listed at the end, to keep
# the suite inside its time budget.
pytest: install browser solver database
	$(BIN)/pytest -n 2 --dist loadfile --durations=30

bench: install
	$(BIN)/python bench/frame_roundtrip.py
	$(BIN)/python bench/frame_analysis.py
	$(BIN)/python bench/capture_series.py
	$(BIN)/python bench/autofocus.py
	$(BIN)/python bench/guide_loop.py
	$(BIN)/python bench/solve.py
	$(BIN)/python bench/sequence_overhead.py
	$(BIN)/python bench/register.py
	$(BIN)/python bench/integrate.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/plan_tonight.py
	$(BIN)/python bench/capture_under_load.py
	$(BIN)/python bench/finish.py
	$(BIN)/python bench/dawn.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/soak.py --minutes 5

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
