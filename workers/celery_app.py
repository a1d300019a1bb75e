"""The Celery entry point (`celery -A workers.celery_app ...`): configuration only."""
from pipeline.broker import broker_url, create_celery
from pipeline.settings import load_settings
from workers import heartbeat, runtime

settings = load_settings()
app = create_celery(settings, include=["workers.tasks", "workers.benchmark_task"])
runtime.install(app, settings)
heartbeat.install(broker_url(settings), settings.worker_pool, runtime.model_version())
