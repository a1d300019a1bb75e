# syntax=docker/dockerfile:1
# One image per role, each installing exactly its extra (pyproject.toml, README "Installs per role"):
#   docker build --target web        -t fashion-batch-web .          # Flask + gunicorn, ONNX Runtime, no torch
#   docker build --target worker-cpu -t fashion-batch-worker-cpu .   # + torch (CPU wheels) and the workers
#   docker build --target worker-gpu -t fashion-batch-worker-gpu .   # + torch (CUDA wheels), onnxruntime-gpu
# docker-compose.yml builds them.

FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 FB_WEIGHTS_DIR=/app/weights FB_DATA_DIR=/data
WORKDIR /app
RUN useradd --uid 10001 --create-home app && mkdir -p /data/storage && chown -R app /data
COPY pyproject.toml README.md ./
COPY pipeline ./pipeline
COPY workers ./workers
COPY webhook ./webhook
COPY training ./training
COPY weights ./weights

# The web service and the CLI client: no torch (POST /v1/classify runs on ONNX Runtime, loaded on first use).
FROM base AS web
RUN pip install '.[classify]'
USER app
EXPOSE 8000
CMD ["gunicorn", "webhook:create_app()", "-b", "0.0.0.0:8000", "-w", "4", "-k", "gthread", "--threads", "4", \
     "--timeout", "300"]

# CPU workers, beat, Flower and migrations: torch from the CPU wheel index (a fraction of the CUDA build).
FROM base AS worker-cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.14.1 --index-url "${TORCH_INDEX}" && pip install '.[worker]'
USER app
CMD ["celery", "-A", "workers.celery_app", "worker", "-Q", "cpu", "-n", "cpu@%h", "--loglevel", "INFO"]

# GPU workers: PyPI's torch is the CUDA build; ONNX Runtime is swapped for its CUDA package.
FROM base AS worker-gpu
RUN pip install '.[worker]' && pip uninstall -y onnxruntime && pip install onnxruntime-gpu
USER app
ENV FB_WORKER_POOL=gpu
CMD ["celery", "-A", "workers.celery_app", "worker", "-Q", "gpu", "-n", "gpu@%h", "--concurrency", "1", \
     "--loglevel", "INFO"]
