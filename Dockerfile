# s3gate service image. The base is an argument so CI can build from a locally made image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/s3gate

# Dependencies first, in a layer that survives code and docs changes: install what
# pyproject.toml declares, with an empty package (and README) standing in for the project.
COPY pyproject.toml ./
RUN mkdir app && touch app/__init__.py README.md \
    && pip install . \
    && pip uninstall --yes s3gate \
    && rm -rf app README.md build ./*.egg-info

COPY README.md alembic.ini ./
COPY alembic ./alembic
COPY app ./app
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info \
    && groupadd --system --gid 10001 s3gate \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin s3gate

USER 10001:10001
# `s3gate serve` reads these as its --host/--port defaults; the health check follows the port.
ENV S3GATE_HOST=0.0.0.0 \
    S3GATE_PORT=8000
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('S3GATE_PORT', '8000'), timeout=2)"]

# Migrations are a separate step: `docker run ... s3gate migrate`.
CMD ["s3gate", "serve"]
