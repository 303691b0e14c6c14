# syntax=docker/dockerfile:1
#
# Stages:
#   runtime  python:3.11-slim, the non-root user and the data dir (no Python deps)
#   base     CPU-only torch + the project          -> migrations (docker-compose `migrate`)
#   api      base + HEALTHCHECK + uvicorn          -> `docker build --target api .`
#   worker   CUDA (cu128) torch + the project      -> `docker build --target worker .`
#
# The worker does not build FROM base: installing CUDA torch over the CPU build
# would leave the CPU wheel in a lower layer of the image for nothing.
# torch is installed before `pip install .` so pip finds the requirement
# (torch>=2.2,<2.15 in pyproject.toml) already met and never fetches the PyPI build.

FROM python:3.11-slim AS runtime

ARG APP_UID=10001
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHARDTRAIN_DATA_DIR=/data

RUN groupadd --system --gid "${APP_UID}" shardtrain \
 && useradd --system --uid "${APP_UID}" --gid shardtrain \
        --create-home --home-dir /home/shardtrain --shell /usr/sbin/nologin shardtrain \
 && mkdir -p /data /srv/shardtrain \
 && chown shardtrain:shardtrain /data \
 && chmod 0750 /data

WORKDIR /srv/shardtrain


FROM runtime AS base

RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

# Dependencies first (cached until pyproject.toml changes), then the code.
COPY pyproject.toml README.md ./
RUN pip install . && pip uninstall -y shardtrain-server && rm -rf build ./*.egg-info
COPY app/ app/
COPY workers/ workers/
COPY migrations/ migrations/
COPY alembic.ini ./
RUN pip install --no-deps . && rm -rf build ./*.egg-info

USER shardtrain


FROM base AS api

EXPOSE 8000
# No curl in the slim image: urlopen raises on a refused connection or a non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
USER shardtrain
CMD ["uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]


FROM runtime AS worker

# The cu128 wheels bring the CUDA runtime libraries with them; the host supplies
# only the driver (NVIDIA Container Toolkit, GPU reserved in docker-compose.yml).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128

COPY pyproject.toml README.md ./
RUN pip install . && pip uninstall -y shardtrain-server && rm -rf build ./*.egg-info
COPY app/ app/
COPY workers/ workers/
COPY migrations/ migrations/
COPY alembic.ini ./
RUN pip install --no-deps . && rm -rf build ./*.egg-info

USER shardtrain
# Solo pool: CUDA must not be initialised in a parent that then forks; run one
# worker container (one process) per GPU.
CMD ["celery", "-A", "workers.celery_app", "worker", "--pool", "solo", "--loglevel", "INFO", "-Q", "ingest,train,train_gpu,merge"]
