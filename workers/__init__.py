"""Celery workers: the app configuration, per-process model loading and thin tasks."""
