# syntax=docker/dockerfile:1
#
# Stages (every stage a service runs ends as the non-root user `shardtrain`):
#   runtime  python:3.11-slim, the non-root user and the data dir (no Python deps)
#   base     CPU-only torch + the project          -> docker-compose `migrate` (alembic)
#   api      base + HEALTHCHECK + uvicorn          -> `docker build --target api .`
#   beat     base + HEALTHCHECK + celery beat      -> `docker build --target beat .`
#   flower   base + the `monitor` extra (Flower)   -> `docker build --target flower .`
#   worker   CUDA (cu128) torch + the project      -> `docker build --target worker .`
#
# Python dependencies come from pyproject.toml only (`pip install .`), so a
# dependency added there reaches every image without an edit here. Only the
# server package (app/, workers/, migrations/) is copied; the SDK (sdk/) is not
# part of any image.
#
# The worker does not build FROM base: installing CUDA torch over the CPU build
# would leave the CPU wheel in a lower layer of the image for nothing.
# torch is installed before `pip install .` so pip finds the requirement
# (torch>=2.2,<2.15 in pyproject.toml) already met and never fetches the PyPI build.
# Healthchecks use Python (no curl in the slim image); docker-compose.yml repeats
# them word for word (tests/test_deployment_files.py checks that they agree).

FROM python:3.11-slim AS runtime

ARG APP_UID=10001
# numba compiles the boosted trees' loops on first use and caches them; site-packages
# is read-only to the service's user, so the cache lives in its home.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SHARDTRAIN_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/home/shardtrain/.cache/numba

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
# Liveness, not readiness: a Redis or PostgreSQL outage must not get the API replaced.
# urlopen raises on a refused connection or a non-2xx status.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
USER shardtrain
CMD ["uvicorn", "app.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--timeout-graceful-shutdown", "5"]


FROM base AS beat

# Exactly ONE beat in the whole deployment: it only sends the watchdog's sweep.
# Healthy while the scheduler loop is alive (it rewrites its schedule file at least
# every 3 minutes while it sends the sweep) and Redis answers.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import glob, os, sys, time, redis; from app.config import get_settings; s = get_settings(); redis.Redis.from_url(s.broker_url, socket_timeout=5).ping(); paths = glob.glob('/tmp/celerybeat-schedule*'); sys.exit(0 if paths and time.time() - max(map(os.path.getmtime, paths)) < max(600, 3 * s.watchdog_interval_s) else 1)"]
USER shardtrain
CMD ["celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO", "--schedule", "/tmp/celerybeat-schedule"]


FROM base AS flower

# Celery's monitor, from the `monitor` extra of pyproject.toml. Authentication:
# FLOWER_BASIC_AUTH=user:password in the environment (see docs/deploy.md).
USER root
RUN pip install ".[monitor]" && rm -rf build ./*.egg-info
USER shardtrain
EXPOSE 5555
# /healthcheck answers "OK" without authentication, also when basic auth is on.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5555/healthcheck', timeout=4).status == 200 else 1)"]
CMD ["celery", "-A", "workers.celery_app", "flower", "--port=5555"]


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
# Healthy while this worker's heartbeat (app/fleet.py, every 15 s, from a thread) is in
# Redis. Not `celery inspect ping`: a solo pool answers no remote control while it
# trains a shard, so a busy worker would look dead. The worker's node name must be
# the default celery@<hostname> (no `-n`), which is what the check looks up.
HEALTHCHECK --interval=60s --timeout=30s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, redis; from celery.utils.nodenames import default_nodename; from app.config import get_settings; from app.fleet import WorkerRegistry; online = WorkerRegistry(redis.Redis.from_url(get_settings().broker_url, socket_timeout=5)).online(); sys.exit(0 if default_nodename(None) in {w.hostname for w in online} else 1)"]
# Solo pool: CUDA must not be initialised in a parent that then forks; run one
# worker container (one process) per GPU.
CMD ["celery", "-A", "workers.celery_app", "worker", "--pool", "solo", "--loglevel", "INFO", "-Q", "ingest,train,train_gpu,merge"]
