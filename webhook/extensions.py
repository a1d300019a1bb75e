"""The per-process services a request needs, created lazily: database engine, Celery producer, Redis."""
from __future__ import annotations

from functools import cached_property

import redis
from celery import Celery
from flask import current_app
from sqlalchemy import Engine

from pipeline.blobs import BlobStore
from pipeline.settings import Settings
from pipeline.store import engine as db


class Services:
    """Holds the settings and builds each client on first use (after any fork of the web server)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @property
    def engine(self) -> Engine:
        return db.get_engine(self.settings.database_url)

    @cached_property
    def celery(self) -> Celery:
        from pipeline.broker import create_celery

        return create_celery(self.settings)

    @cached_property
    def store(self) -> BlobStore:
        from pipeline.blobs import open_store

        return open_store(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=2, socket_timeout=2)

    @cached_property
    def catalogue(self):
        """The models under FB_WEIGHTS_DIR (their manifests only: no ML runtime is imported)."""
        from pipeline.inference.catalogue import load_catalogue

        return load_catalogue(self.settings.weights_dir)

    def classes(self, model: str | None = None) -> list[str]:
        """The class names of `model` (the default model's for None, or for a model no longer installed)."""
        manifests = self.catalogue.manifests
        manifest = manifests.get(model) if model else None
        return list((manifest or self.catalogue.get(self.settings.default_model)).classes)


def services() -> Services:
    """The services of the running app."""
    return current_app.extensions["fashion_batch"]
