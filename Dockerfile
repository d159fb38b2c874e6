# s3gate service image. The base is an argument so CI can build from a locally made image.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv/s3gate

# Dependencies first, in a layer that survives code changes: install the project's declared
# dependencies from pyproject.toml alone, with an empty package standing in for the code.
COPY pyproject.toml README.md ./
RUN mkdir app && touch app/__init__.py \
    && pip install . \
    && pip uninstall --yes s3gate \
    && rm -rf app

COPY app ./app
COPY alembic ./alembic
COPY alembic.ini ./
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin s3gate

USER 10001
EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]

# Migrations are a separate step: `docker run ... s3gate migrate`.
CMD ["s3gate", "serve", "--host", "0.0.0.0", "--port", "8000"]
