"""Run Flower behind its basic auth on every page, `/metrics` included.

Flower 2.2 checks `--basic-auth` on its pages and API but not on `/metrics`, which lists every worker and
task name. This entry point closes that gap before Flower starts; `/healthcheck` stays open for probes.

    FB_FLOWER_PASSWORD=... python -m workers.flower --port=5555

The login (FB_FLOWER_USER, FB_FLOWER_PASSWORD) is handed to Flower through its environment (FLOWER_BASIC_AUTH),
never on the command line, where any user of the host could read it with `ps`.
"""
from __future__ import annotations

import os
import sys

import tornado.web
from flower.views import monitor


def protect_metrics() -> None:
    """Make Flower's metrics handler require the same login as its other pages (idempotent)."""
    get = monitor.Metrics.get
    if getattr(get, "login_required", False):
        return
    guarded = tornado.web.authenticated(get)
    guarded.login_required = True
    monitor.Metrics.get = guarded


def main(argv: list[str] | None = None) -> None:
    from pipeline.settings import load_settings, require

    settings = load_settings()
    require(settings, "flower")
    if settings.flower_password:
        os.environ["FLOWER_BASIC_AUTH"] = f"{settings.flower_user}:{settings.flower_password}"
    protect_metrics()
    from celery.bin.celery import main as celery_main

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["celery", "-A", "workers.celery_app", "flower", *args]
    celery_main()


if __name__ == "__main__":
    main()
