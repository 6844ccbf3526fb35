# One image for every Nightowl service of docker-compose.yml: the daemon (`nightowl serve`),
# the simulator rig (`nightowl sim`) and the Dask scheduler and workers (`dask scheduler`,
# `dask worker`, from the `distributed` dependency). It installs exactly what `make install`
# installs; the Python version satisfies pyproject.toml's requires-python.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml Makefile README.md ./
# The small-field solver (astrometry.net and its Tycho-2 indexes, ~300 MB): `make solver`.
RUN make solver && rm -rf /var/lib/apt/lists/*
COPY daemon ./daemon
COPY drivers ./drivers
COPY sequences ./sequences
COPY processing ./processing
RUN make install
# The data volume is mounted at /app/var by every service that reads or writes frames; the
# star catalog and the solver's databases (a minute each to build) are kept on it too.
ENV PATH=/app/.venv/bin:$PATH \
    NIGHTOWL_DATA_DIR=/app/var \
    NIGHTOWL_CACHE_DIR=/app/var/cache
# The API, the simulators and the Dask scheduler.
EXPOSE 8000 11111 8786
CMD ["nightowl", "serve"]
