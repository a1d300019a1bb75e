"""Celery workers: the entry point, per-process model loading, thin tasks, callback delivery, the beat lock."""
