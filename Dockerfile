# Nightowl daemon and simulator rig; installs exactly what `make install` installs.
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
ENV PATH=/app/.venv/bin:$PATH \
    NIGHTOWL_DATA_DIR=/app/var
EXPOSE 8000 11111
CMD ["nightowl", "serve"]
