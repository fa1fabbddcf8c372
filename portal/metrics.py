"""Prometheus metrics: HTTP and task instruments, plus state gauges computed at scrape time.

`/metrics` needs login like every page, and an admin (403 for others).

Several processes (gunicorn workers, the Celery prefork pool) each count their own requests and
tasks. With PROMETHEUS_MULTIPROC_DIR set (an empty folder shared by web and worker, set before
any of them starts) prometheus_client writes the counters and histograms there and `/metrics`
merges every process's files; without it, `/metrics` shows only the answering process's
default registry (fine for one process; the worker's metrics are then not visible).

The state gauges (campaigns by status, queue depth, DB pool, storage bytes) are read at scrape
time by `StateCollector`; a family whose source is down is left out and counted in
`portal_scrape_errors_total{family}` instead of failing the scrape.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Histogram, generate_latest, multiprocess)
from prometheus_client.core import GaugeMetricFamily

from . import read_only

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# --- Instruments (module level: one set per process) -------------------------------------------

HTTP_DURATION = Histogram(
    "portal_http_request_duration_seconds", "Time to answer a request, by Flask endpoint.",
    ["method", "endpoint", "status_class"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
HTTP_REQUESTS = Counter(
    "portal_http_requests", "Requests answered, by Flask endpoint and status code.",
    ["method", "endpoint", "status"])
TASK_STAGE = Histogram(
    "portal_task_stage_seconds", "Time of each stage of a completed render (from campaigns.timings).",
    ["stage"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0))
TASK_DURATION = Histogram(
    "portal_task_duration_seconds", "Wall time of one Celery task run, by task and Celery state.",
    ["task", "state"], buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0))
TASK_FAILURES = Counter(
    "portal_task_failures", "Celery task runs that ended in an exception (state FAILURE; retries excluded).", ["task"])
CAMPAIGNS_FINISHED = Counter(
    "portal_campaigns_finished", "Campaign runs that ended, by outcome.", ["outcome"])
SCRAPE_ERRORS = Counter(
    "portal_scrape_errors", "State gauges left out of a scrape because their source failed.",
    ["family"])

STAGES = ("fetch", "decode", "analyse", "render", "encode", "save", "total")
OUTCOMES = ("completed", "failed", "retried")
STORAGE_CACHE_SECONDS = 30.0


# --- Worker-side helpers (called from worker/pipeline.py and worker/leases.py) ------------------

def observe_timings(timings: dict) -> None:
    """The pipeline's `timings` (`<stage>_ms`) into the stage histogram; unknown keys ignored."""
    for stage in STAGES:
        value = timings.get(f"{stage}_ms")
        if isinstance(value, (int, float)):
            TASK_STAGE.labels(stage).observe(value / 1000.0)


def campaign_finished(outcome: str, count: int = 1) -> None:
    if count > 0:
        CAMPAIGNS_FINISHED.labels(outcome).inc(count)


# --- HTTP ---------------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Register before authentication, so refused (401) requests are timed and counted too."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    app.register_blueprint(bp)


def _start_timer() -> None:
    g._metrics_started = time.perf_counter()


def _observe(response):
    started = g.pop("_metrics_started", None)
    if started is None:
        return response
    endpoint = request.endpoint or "unmatched"  # never the raw path: bounded label values
    method = request.method if request.method in _METHODS else "other"
    status = response.status_code
    HTTP_DURATION.labels(method, endpoint, f"{status // 100}xx").observe(time.perf_counter() - started)
    HTTP_REQUESTS.labels(method, endpoint, str(status)).inc()
    return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_view():
    """Prometheus text format; login required (the global hook) and admins only."""
    user = g.get("user")
    if user is None or not user.is_admin:
        abort(403)
    state = StateCollector(current_app._get_current_object())
    collected = list(state.collect())  # first, so this scrape's errors are counted below
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(_Combined(collected, registry))
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


class _Combined:
    def __init__(self, first: list, registry) -> None:
        self.first, self.registry = first, registry

    def collect(self):
        yield from self.first
        yield from self.registry.collect()


# --- State gauges computed at scrape time -------------------------------------------------------

class StateCollector:
    """Campaigns by status, queue depth, DB pool use, storage bytes; each family independent."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):
        for family, probe in (("campaigns", self._campaigns), ("queue", self._queue),
                              ("db_pool", self._db_pool), ("storage", self._storage)):
            try:
                yield from list(probe())
            except Exception as e:  # a scrape must not fail because one source is down
                SCRAPE_ERRORS.labels(family).inc()
                log.warning("metrics: %s unavailable: %s", family, type(e).__name__)

    def _campaigns(self):
        from .models import STATUSES, Campaign, db

        counts = dict.fromkeys(STATUSES, 0)
        with db.engine.connect() as conn:  # its own connection: never the request's session
            rows = conn.execute(sa.select(Campaign.status, sa.func.count())
                                .group_by(Campaign.status)).all()
        for status, count in rows:
            counts[status] = count
        gauge = GaugeMetricFamily("portal_campaigns", "Campaigns by status.", labels=["status"])
        for status, count in counts.items():
            gauge.add_metric([status], count)
        yield gauge

    def _queue(self):
        config = self.app.config
        celery = self.app.extensions["celery"]
        queue = celery.conf.task_default_queue or "celery"
        if config["CELERY_BROKER_URL"].startswith("filesystem"):
            folder = Path(config["INSTANCE_DIR"]) / "broker" / "queue"
            suffix = f".{queue}.msg"  # kombu names messages <stamp>_<uuid>.<queue>.msg
            depth = sum(1 for entry in os.scandir(folder) if entry.name.endswith(suffix))
        else:
            with celery.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, timeout=2)
                # Redis: LLEN of the queue's list (summed over kombu's priority lists).
                depth = conn.default_channel._size(queue)
        gauge = GaugeMetricFamily("portal_queue_depth", "Messages waiting in the broker queue.",
                                  labels=["queue"])
        gauge.add_metric([queue], depth)
        yield gauge

    def _db_pool(self):
        # The default engine's pool and the read-only one's (portal/read_only.py), together.
        pools = [e.pool for e in read_only.engines() if hasattr(e.pool, "checkedout")]
        if not pools:
            return  # pools without a size (NullPool, StaticPool): nothing to report
        checked_out = GaugeMetricFamily(
            "portal_db_pool_checked_out", "Database connections in use in this web process's pools.")
        checked_out.add_metric([], sum(pool.checkedout() for pool in pools))
        yield checked_out
        size = GaugeMetricFamily("portal_db_pool_size", "Configured size of this process's pools.")
        size.add_metric([], sum(pool.size() for pool in pools))
        yield size

    def _storage(self):
        used, files = storage_usage(self.app.config["STORAGE_DIR"])
        gauge = GaugeMetricFamily("portal_storage_bytes", "Bytes stored under STORAGE_DIR.")
        gauge.add_metric([], used)
        yield gauge
        count = GaugeMetricFamily("portal_storage_files", "Files stored under STORAGE_DIR.")
        count.add_metric([], files)
        yield count


_storage_cache: dict[str, tuple[float, int, int]] = {}
_storage_lock = threading.Lock()


def storage_usage(root: str, max_age: float = STORAGE_CACHE_SECONDS) -> tuple[int, int]:
    """(bytes, files) under root, walked at most once per `max_age` seconds per process."""
    now = time.monotonic()
    with _storage_lock:
        cached = _storage_cache.get(root)
        if cached and now - cached[0] < max_age:
            return cached[1], cached[2]
        used = files = 0
        stack = [root]
        while stack:
            try:
                entries = list(os.scandir(stack.pop()))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        used += entry.stat(follow_symlinks=False).st_size
                        files += 1
                except FileNotFoundError:  # removed while we walked
                    continue
        _storage_cache[root] = (now, used, files)
        return used, files
