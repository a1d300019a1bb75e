"""The Celery entry point (`celery -A workers.celery_app ...`): configuration only."""
from pipeline.settings import load_settings
from workers import beat_lock, runtime
from workers.config import broker_url, create_celery

settings = load_settings()
app = create_celery(settings)
runtime.install(app, settings)
beat_lock.install(broker_url(settings))
