"""`GET /metrics` for Prometheus: job, item and chunk figures from PostgreSQL, plus HTTP request metrics.

The database figures are read at scrape time by a custom collector, so they are right across every web and
worker process. The HTTP counters belong to the web processes: under gunicorn set PROMETHEUS_MULTIPROC_DIR
(the launcher does) so that a scrape sums every worker process, not just the one that answered.

Authentication: open by default, like most Prometheus targets (restrict it by network policy); set
FB_METRICS_TOKEN to require `Authorization: Bearer <token>` when the web port is reachable from outside.
"""
from __future__ import annotations

import hmac
import time
from typing import Callable, Iterator

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from pipeline.store import stats
from webhook.errors import ApiError
from webhook.extensions import services

bp = Blueprint("metrics", __name__)
PREFIX = "fashion_batch"


class DatabaseCollector:
    """Yields the figures of `pipeline.store.stats.snapshot` as metric families at each scrape."""

    def __init__(self, engine: Callable[[], Engine]):
        self._engine = engine

    def describe(self) -> list:
        return []  # registering must not query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 if PostgreSQL answered this scrape")
        try:
            snap = stats.snapshot(self._engine())
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs by status", labels=["status"])
        for status in ("queued", "running", "succeeded", "partial", "failed", "cancelled"):
            jobs.add_metric([status], snap.jobs.get(status, 0))
        yield jobs
        items = GaugeMetricFamily(f"{PREFIX}_items", "Items by outcome (pending: in queued or running jobs)",
                                  labels=["outcome"])
        for outcome, n in snap.items.items():
            items.add_metric([outcome], n)
        yield items
        waiting = GaugeMetricFamily(f"{PREFIX}_chunks", "Chunks not finished yet, by pool and status",
                                    labels=["pool", "status"])
        for (pool, status), n in sorted(snap.chunks_waiting.items()):
            waiting.add_metric([pool, status], n)
        yield waiting
        hist = HistogramMetricFamily(f"{PREFIX}_chunk_duration_seconds",
                                     "Seconds from start to finish of each finished chunk", labels=["pool"])
        for pool, h in sorted(snap.chunk_seconds.items()):
            buckets = [(repr(b), n) for b, n in h.buckets] + [("+Inf", h.count)]
            hist.add_metric([pool], buckets, h.total)
        yield hist
        recent = GaugeMetricFamily(f"{PREFIX}_chunk_duration_recent_seconds",
                                   "Quantiles of chunk duration over the last 5 minutes", labels=["pool", "quantile"])
        for pool, qs in sorted(snap.recent_chunk_quantiles.items()):
            for q, v in qs.items():
                recent.add_metric([pool, repr(q)], v)
        yield recent


class HttpMetrics:
    """Request counters and latencies of this web process, labelled by route (never the raw path)."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(f"{PREFIX}_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=registry)
        self.seconds = Histogram(f"{PREFIX}_http_request_duration_seconds", "HTTP request latency",
                                 ["method", "route"], registry=registry)

    def before(self) -> None:
        g.metrics_started = time.perf_counter()

    def after(self, response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        self.requests.labels(request.method, route, str(response.status_code)).inc()
        started = g.pop("metrics_started", None)
        if started is not None:
            self.seconds.labels(request.method, route).observe(time.perf_counter() - started)
        return response


def init_app(app: Flask) -> None:
    """Register /metrics and the HTTP instrumentation on `app` (each app has its own registry)."""
    registry = CollectorRegistry()
    collector = DatabaseCollector(lambda: services().engine)
    registry.register(collector)
    http = HttpMetrics(registry)
    app.before_request(http.before)
    app.after_request(http.after)
    app.extensions["fashion_batch_metrics"] = (registry, collector)
    app.register_blueprint(bp)


def _check_token() -> None:
    token = services().settings.metrics_token
    if not token:
        return
    sent = request.headers.get("Authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "metrics need 'Authorization: Bearer <FB_METRICS_TOKEN>'")


@bp.get("/metrics")
def metrics():
    """The Prometheus exposition of every figure above."""
    _check_token()
    registry, collector = current_app.extensions["fashion_batch_metrics"]
    if services().settings.prometheus_multiproc_dir:  # gunicorn's processes share counters through files
        from prometheus_client import multiprocess

        # Sum the HTTP metrics of every gunicorn worker from their files; the database figures are global anyway.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(collector)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
