# s3gate service image. The base is an argument so CI can build from a locally made image.
# Settings come from S3GATE_* environment variables (docs/deploy.md lists them); the image holds
# no secret and no development tool. It runs as uid 10001 on a read-only root filesystem
# (`docker run --read-only --tmpfs /tmp`).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# The dependency list alone, read from pyproject.toml: the install layer below is rebuilt when
# a dependency changes, not when the code, the docs or the tool settings in pyproject.toml do.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt

FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/s3gate

COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
RUN pip install --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself (compiled to bytecode at install: nothing is written at run time). The
# migrations are package data inside it: `s3gate migrate` needs nothing from this directory.
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install --no-deps . \
    && rm -rf app build ./*.egg-info pyproject.toml README.md \
    && groupadd --system --gid 10001 s3gate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin s3gate

USER 10001:10001
# `s3gate serve` reads these as its --host/--port defaults; the health check follows the port.
# Workers, proxy headers, trusted proxies, the drain and migrate-on-start are S3GATE_* settings.
ENV S3GATE_HOST=0.0.0.0 \
    S3GATE_PORT=8000
EXPOSE 8000

# Liveness only (/healthz touches no dependency), with the Python already in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('S3GATE_PORT', '8000'), timeout=2)"]

# SIGTERM drains: no new connections, requests in flight finish (S3GATE_GRACEFUL_SHUTDOWN_SECONDS).
STOPSIGNAL SIGTERM
# Migrations are a separate step: `docker run ... s3gate migrate` (or S3GATE_MIGRATE_ON_START).
CMD ["s3gate", "serve"]
