"""Celery wired the way Flask's Celery pattern shows, with the reliability settings of RELIABILITY.md.

The web process only publishes task names (it never imports the tasks); the worker
imports worker.tasks through `include`. Start a worker with
    celery -A wsgi:celery_app worker
"""
from __future__ import annotations

import time
from pathlib import Path

from celery import Celery, Task
from celery.signals import task_failure, task_postrun, task_prerun, worker_process_init
from flask import Flask
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// (the embedded runner) with whole-file messages; see worker/fs_broker.py.
TRANSPORT_ALIASES["filesystem"] = "worker.fs_broker:Transport"


def celery_init_app(app: Flask) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(_settings(app.config))
    celery.set_default()
    app.extensions["celery"] = celery

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_):
        # A forked pool child must not share the parent's sockets (sqlalchemy#7815).
        with app.app_context():
            from portal import read_only
            for engine in read_only.engines():
                engine.dispose(close=False)
        from . import cropping, limits
        cropping.warm_up()  # load the face cascades now, not during the child's first render
        limits.apply_memory_limit(app.config["WORKER_MEMORY_MB"])  # MemoryError, not an OOM kill

    return celery


# --- Observability: the web request's id on the task's log lines, and task metrics -------------
# (portal/logs.py, portal/metrics.py). Connected once per process, whatever the number of apps.

@task_prerun.connect(weak=False, dispatch_uid="portal.task_prerun")
def _task_prerun(task_id=None, task=None, **_):
    from portal import logs
    _running[task_id] = (logs.task_started(task), time.perf_counter())


@task_postrun.connect(weak=False, dispatch_uid="portal.task_postrun")
def _task_postrun(task_id=None, task=None, state=None, **_):
    from portal import logs, metrics
    token, started = _running.pop(task_id, (None, None))
    if started is not None and task is not None:
        metrics.TASK_DURATION.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)
    logs.task_finished(token)


@task_failure.connect(weak=False, dispatch_uid="portal.task_failure")
def _task_failure(sender=None, **_):
    from portal import metrics
    metrics.TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


_running: dict = {}


def _settings(config) -> dict:
    limit = config["TASK_TIME_LIMIT"]
    return {
        "broker_url": config["CELERY_BROKER_URL"],
        "broker_transport_options": _transport_options(config),
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "include": ["worker.tasks"],
        "task_ignore_result": True,  # the campaign row is the result
        "task_acks_late": True,  # ack after the work is done, so a crash redelivers
        "task_reject_on_worker_lost": True,  # ...even when the pool child was killed
        # Not task_retry_on_worker_lost: the rejected message already comes back with its task id,
        # and claim()'s attempt counter (MAX_ATTEMPTS) ends the loop of a message that kills every
        # child; a retry would also spend the database-outage retries (max_retries) of the task.
        "worker_lost_wait": 2.0,
        "task_time_limit": limit,
        "task_soft_time_limit": int(limit * 0.8),
        "worker_prefetch_multiplier": 1,  # reserve no more than we run
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_soft_shutdown_timeout": 30.0,
        "worker_max_memory_per_child": 1_000_000,  # KiB: recycle a child that grew past ~1 GB
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            # Expires: while every pool process is busy, rounds queue up; only the newest is worth running.
            "reconcile": {"task": "worker.tasks.reconcile", "schedule": float(config["RECONCILE_SECONDS"]),
                          "options": {"expires": float(config["RECONCILE_SECONDS"])}},
        },
    }


def _transport_options(config) -> dict:
    if config["CELERY_BROKER_URL"].startswith("filesystem"):
        # Embedded broker: folders under instance/, polled often so a job starts within ~0.1 s.
        base = Path(config["INSTANCE_DIR"]) / "broker"
        folders = {name: base / name for name in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        return {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
                "processed_folder": str(folders["processed"]), "store_processed": False,
                "control_folder": str(folders["control"]), "polling_interval": 0.1}
    # Redis: unacked work comes back after the visibility timeout, which must outlast a task.
    return {"visibility_timeout": config["VISIBILITY_TIMEOUT"], "socket_timeout": 5,
            "socket_connect_timeout": 5, "health_check_interval": 10,
            "unacked_restore_interval": 10, "unacked_restore_throttle": 1}
