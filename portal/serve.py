"""Run the whole portal on embedded defaults: `python -m portal.serve`.

SQLite in instance/, Celery's filesystem broker, a real worker process (with the
reconciler's beat), and the web app under gunicorn — the same processes as in
production, with nothing to install but the Python requirements.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from . import ROOT, config, create_app
from .cli import bootstrap


def _keep_secret_key(instance: Path) -> None:
    key_file = instance / "secret_key"
    if not os.environ.get("PORTAL_SECRET_KEY") and not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(48))
        key_file.chmod(0o600)


def _fresh_metrics_dir(instance: Path) -> None:
    """Multiprocess metrics shared by gunicorn's workers and the Celery pool, emptied at each start."""
    folder = Path(os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(instance / "metrics")))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def main() -> int:
    settings = config.from_environment()
    instance = Path(settings["INSTANCE_DIR"])
    instance.mkdir(parents=True, exist_ok=True)
    for folder in (settings["STORAGE_DIR"], settings["IMPORT_DIR"]):
        Path(folder).mkdir(parents=True, exist_ok=True)
    _keep_secret_key(instance)
    _fresh_metrics_dir(instance)  # before create_app: prometheus_client reads it on import
    app = create_app()
    with app.app_context():
        generated = bootstrap()
    port = os.environ.get("PORT", "8000")
    host = os.environ.get("PORTAL_HOST", "127.0.0.1")
    python = sys.executable
    worker = subprocess.Popen([
        python, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--beat", "--loglevel=INFO",
        "--concurrency", os.environ.get("PORTAL_WORKER_CONCURRENCY", "2"),
        "--schedule", str(instance / "celerybeat-schedule")], cwd=ROOT)
    web = subprocess.Popen([
        python, "-m", "gunicorn", "-c", "python:portal.gunicorn_conf", "wsgi:app",
        "--bind", f"{host}:{port}", "--workers", "2", "--threads", "4", "--access-logfile", "-",
        # gunicorn 27's control socket defaults to one per user: two portals would share it.
        "--control-socket", str(instance / "gunicorn.ctl")], cwd=ROOT)
    print(f"\n  Campaign portal: http://{host}:{port}/", flush=True)
    if generated:
        print(f"  Sign in as {settings['ADMIN_USER']!r} with password {generated!r}"
              " (shown once; stored only as a hash)\n", flush=True)
    else:
        print(f"  Sign in as {settings['ADMIN_USER']!r} (or another user of `flask users list`)\n",
              flush=True)
    return _wait(web, worker)


def _wait(*children: subprocess.Popen) -> int:
    """Stop everything when one child dies or we are told to stop."""
    def stop(signum, _frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    pid, status = os.wait()
    stop(None, None)
    for child in children:
        try:
            child.wait(timeout=40)
        except subprocess.TimeoutExpired:
            child.kill()
    return os.waitstatus_to_exitcode(status) if pid else 0


if __name__ == "__main__":
    sys.exit(main())
