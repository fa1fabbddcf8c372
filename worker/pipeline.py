"""One campaign's run: claim the row, fetch, render, save, finish — every write fenced by attempt.

The attempt counter is the fencing token (RELIABILITY.md §1): a run that lost its lease
(the reconciler gave its campaign to another run) finds its writes match no row and stops.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from portal import metrics
from portal.models import RATIOS, Campaign, Variant, db, utcnow
from portal.storage import TEMP_PREFIX, storage

from . import boxes, cropping, imaging, sources

log = logging.getLogger(__name__)


class Fenced(Exception):
    """This run no longer owns the campaign; stop quietly."""


# The database is away (stopped, stalled, restarting): the task retries, the reconciler covers the rest.
DATABASE_AWAY = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)
STAGING = ".attempt-"  # <campaign>/.attempt-<n>/: one run's outputs until its fenced finish


class StorageFull(sources.TransientSourceError):
    """The disk of the storage folder is full: not the marketer's fault, worth retrying later."""


class RetryLater(Exception):
    """A remote source is briefly unavailable: the task re-sends itself after `countdown` seconds."""

    def __init__(self, countdown: float) -> None:
        super().__init__(countdown)
        self.countdown = countdown


def process(campaign_id: str, task_id: str) -> None:
    try:
        attempt = claim(campaign_id, task_id)
    except DATABASE_AWAY:
        _rollback()
        raise
    if attempt is None:
        return
    try:
        with Heartbeat(campaign_id, attempt):
            _run(campaign_id, attempt)
    except Fenced:
        _superseded(campaign_id, attempt)
    except (imaging.ImageRejected, sources.SourceError) as e:
        _fail(campaign_id, attempt, str(e))
    except sources.TransientSourceError as e:
        _wait_and_retry(campaign_id, attempt, e)
    except SoftTimeLimitExceeded:
        _fail(campaign_id, attempt, "Processing took too long and was stopped. Try a smaller image.")
    except MemoryError:  # the child's memory ceiling (worker/limits.py): the picture, not a crash
        log.warning("campaign %s: attempt %s ran out of memory", campaign_id, attempt)
        _rollback()
        _fail(campaign_id, attempt, "The image is too large to process with the memory this server "
                                    "allows; try a smaller image.")
    except DATABASE_AWAY:
        _rollback()
        raise  # the database is away: Celery retries, the reconciler covers the rest
    except Exception:
        log.exception("campaign %s: attempt %s crashed", campaign_id, attempt)
        db.session.rollback()
        _fail(campaign_id, attempt, f"An internal error stopped processing (reference {task_id}).")


def claim(campaign_id: str, task_id: str) -> int | None:
    """Take the campaign with one conditional UPDATE; the new attempt number, or None if not ours."""
    config = current_app.config
    now = utcnow()
    stale = now - timedelta(seconds=config["LEASE_SECONDS"])
    c = Campaign
    claimable = sa.or_(c.status == "pending", sa.and_(
        c.status == "processing", sa.or_(c.task_id == task_id, c.heartbeat_at < stale)))
    result = db.session.execute(
        sa.update(c).where(c.id == campaign_id, c.attempt < config["MAX_ATTEMPTS"], claimable)
        .values(status="processing", attempt=c.attempt + 1, task_id=task_id, heartbeat_at=now,
                started_at=now, stage="fetching", progress=5, error_message=None),
        execution_options={"synchronize_session": False})
    db.session.commit()
    if result.rowcount == 1:
        attempt = db.session.execute(sa.select(c.attempt).where(c.id == campaign_id)).scalar_one()
        log.info("campaign %s: attempt %s started by task %s in process %s", campaign_id, attempt, task_id,
                 os.getpid())
        _remove_leftovers(campaign_id)
        return attempt
    give_up_if_exhausted(campaign_id)
    log.info("campaign %s: not claimed by task %s (done, or another run owns it)", campaign_id, task_id)
    return None


def _remove_leftovers(campaign_id: str) -> None:
    """Temp files and staged outputs of earlier attempts: they died, or are fenced off from now on.

    A stale run that wakes later may write into its staging folder again; its finish is then
    fenced and it removes the folder itself (_superseded)."""
    folder = storage().campaign_dir(campaign_id)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(STAGING):
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(TEMP_PREFIX):
            path.unlink(missing_ok=True)


class Heartbeat:
    """Refresh heartbeat_at every lease/4 seconds while this run works, however long one step takes.

    Its own connection and thread: a render or a slow download never lets the lease lapse, and a
    run that was stopped (SIGSTOP, a stalled VM) stops beating, so the reconciler hands the
    campaign to another run; the beat is fenced by attempt like every other write.
    """

    def __init__(self, campaign_id: str, attempt: int) -> None:
        self.campaign_id, self.attempt = campaign_id, attempt
        self.every = max(0.5, current_app.config["LEASE_SECONDS"] / 4)
        self.engine = db.engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{campaign_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        # Not waiting out a beat stuck on a stalled database: any late beat is fenced by attempt.
        self._thread.join(timeout=1)

    def _beat(self) -> None:
        c = Campaign.__table__.c
        while not self._stop.wait(self.every):
            try:
                with self.engine.begin() as conn:
                    beat = conn.execute(sa.update(Campaign.__table__).where(
                        c.id == self.campaign_id, c.attempt == self.attempt, c.status == "processing")
                        .values(heartbeat_at=utcnow()))
            except DATABASE_AWAY as e:  # the run's own next write will find out too
                log.warning("campaign %s: heartbeat failed (%s)", self.campaign_id, type(e).__name__)
                continue
            if beat.rowcount != 1:
                return  # the campaign is finished, gone, or a newer attempt's: nothing left to keep


def give_up_if_exhausted(campaign_id: str) -> None:
    """A live campaign that used up its attempts (a worker kept dying on it) is failed, not left."""
    config = current_app.config
    stale = utcnow() - timedelta(seconds=config["LEASE_SECONDS"])
    c = Campaign
    result = db.session.execute(
        sa.update(c).where(c.id == campaign_id, c.attempt >= config["MAX_ATTEMPTS"], sa.or_(
            c.status == "pending", sa.and_(c.status == "processing", c.heartbeat_at < stale)))
        .values(status="failed", stage=None, finished_at=utcnow(), error_message=(
            f"Processing stopped unexpectedly {config['MAX_ATTEMPTS']} times; "
            "the image may be too large or damaged.")),
        execution_options={"synchronize_session": False})
    db.session.commit()
    metrics.campaign_finished("failed", result.rowcount)  # metrics


def _wait_and_retry(campaign_id: str, attempt: int, error: sources.TransientSourceError) -> None:
    """Back to pending with the reason shown, and a delayed retry; the last attempt fails instead."""
    max_attempts = current_app.config["MAX_ATTEMPTS"]
    if attempt >= max_attempts:
        _fail(campaign_id, attempt, f"{error} We tried {attempt} times; use Retry to try again later.")
        return
    # Honour the service's Retry-After, else back off; stay well inside the broker's visibility timeout.
    countdown = min(error.retry_after or 5 * 2 ** (attempt - 1), current_app.config["VISIBILITY_TIMEOUT"] / 3)
    try:
        # enqueued_at is when the retry is due: the reconciler re-sends only if it is that late.
        _fenced_update(campaign_id, attempt, status="pending", stage="waiting to retry", progress=0,
                       error_message=f"{error} Trying again in {round(countdown)} s.",
                       enqueued_at=utcnow() + timedelta(seconds=countdown))
    except Fenced:
        return
    log.info("campaign %s: attempt %s will retry in %.0f s", campaign_id, attempt, countdown)
    metrics.campaign_finished("retried")  # metrics
    raise RetryLater(countdown)


def _superseded(campaign_id: str, attempt: int) -> None:
    db.session.rollback()
    shutil.rmtree(_staging(campaign_id, attempt), ignore_errors=True)  # our outputs never go live
    if db.session.get(Campaign, campaign_id) is None:
        # Deleted while we rendered: our writes may have recreated its folder after the delete.
        storage().delete(campaign_id)
        log.info("campaign %s was deleted during attempt %s", campaign_id, attempt)
    else:
        log.info("campaign %s: attempt %s was superseded", campaign_id, attempt)


def _fenced_update(campaign_id: str, attempt: int, commit: bool = True, **values) -> None:
    """Update the row only if this attempt still owns it; else Fenced (and nothing written)."""
    c = Campaign
    result = db.session.execute(
        sa.update(c).where(c.id == campaign_id, c.attempt == attempt, c.status == "processing")
        .values(heartbeat_at=utcnow(), **values), execution_options={"synchronize_session": False})
    if result.rowcount != 1:
        db.session.rollback()
        raise Fenced()
    if commit:
        db.session.commit()


def _run(campaign_id: str, attempt: int) -> None:
    config = current_app.config
    started = time.perf_counter()
    campaign = db.session.get(Campaign, campaign_id, populate_existing=True)
    focal = (campaign.focal_x, campaign.focal_y) if campaign.focal_x is not None else None
    manual = {r: boxes.Box(**box) for r, box in (campaign.crop_overrides or {}).items()}
    reasons = {r: "manual" if r in manual else "focal" if focal else "auto" for r in RATIOS}
    only = campaign.rerender_ratios or None
    source = sources.fetch(campaign)
    fetched = time.perf_counter()
    _fenced_update(campaign_id, attempt, stage="rendering", progress=30, placeholder=source.placeholder)
    rendering = imaging.render(source.data, focal=focal, crops=manual, only=only, place=cropping.place,
                               max_pixels=config["MAX_IMAGE_PIXELS"], max_side=config["MAX_IMAGE_SIDE"])
    rendered = time.perf_counter()
    _fenced_update(campaign_id, attempt, stage="saving", progress=80)
    _save_files(campaign_id, attempt, rendering)
    saved = time.perf_counter()
    timings = {"fetch_ms": _ms(fetched - started), **{f"{k}_ms": round(v, 1) for k, v in
               rendering.timings_ms.items()}, "render_total_ms": _ms(rendered - fetched),
               "save_ms": _ms(saved - rendered)}
    _finish(campaign_id, attempt, reasons, rendering, timings, started)


def _staging(campaign_id: str, attempt: int) -> Path:
    return storage().campaign_dir(campaign_id) / f"{STAGING}{attempt}"


def _save_files(campaign_id: str, attempt: int, rendering: imaging.Rendering) -> None:
    """Write every output into this attempt's staging folder; _finish moves them into place.

    A full disk is a StorageFull (retried later) and leaves nothing half-written behind."""
    store, staging = storage(), _staging(campaign_id, attempt)
    outputs = {store.source_preview_path(campaign_id): rendering.source_preview}
    for variant in rendering.variants:
        outputs[store.variant_path(campaign_id, variant.ratio)] = variant.jpeg
        outputs[store.variant_path(campaign_id, variant.ratio, preview=True)] = variant.preview
    try:
        for final, data in outputs.items():
            store.write(staging / final.name, data)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull("The portal's storage is full, so the images could not be saved.") from None
        raise


def _publish_files(campaign_id: str, attempt: int) -> None:
    """Move this attempt's staged outputs into place (renames within one folder: atomic, no space)."""
    staging = _staging(campaign_id, attempt)
    if not staging.is_dir():
        return
    for staged in sorted(staging.iterdir()):
        os.replace(staged, staging.parent / staged.name)
    staging.rmdir()


def _finish(campaign_id: str, attempt: int, reasons: dict[str, str], rendering: imaging.Rendering,
            timings: dict, started: float) -> None:
    """Mark completed and replace the variant rows in one transaction, fenced by attempt."""
    timings["total_ms"] = _ms(time.perf_counter() - started)
    # The fenced UPDATE first: it also locks the row, so a concurrent delete waits for us.
    _fenced_update(campaign_id, attempt, commit=False, status="completed", stage=None, progress=100,
                   finished_at=utcnow(), timings=timings, source_width=rendering.source_width,
                   source_height=rendering.source_height, rerender_ratios=None)
    # Still holding the row lock: no newer attempt can claim the campaign until we commit, so the
    # files that go live are exactly those of the attempt the row says completed.
    _publish_files(campaign_id, attempt)
    rendered = [v.ratio for v in rendering.variants]
    # Delete by primary key, and only rows that exist: a DELETE matching nothing still takes an
    # InnoDB gap lock, and two campaigns finishing together then deadlock on their INSERTs.
    existing = db.session.execute(sa.select(Variant.id).where(
        Variant.campaign_id == campaign_id, Variant.ratio.in_(rendered))).scalars().all()
    if existing:
        db.session.execute(sa.delete(Variant).where(Variant.id.in_(existing)))
    for v in rendering.variants:
        db.session.add(Variant(
            campaign_id=campaign_id, ratio=v.ratio, position=RATIOS.index(v.ratio), width=v.width,
            height=v.height, bytes=len(v.jpeg), crop_x=v.crop.x, crop_y=v.crop.y, crop_w=v.crop.w,
            crop_h=v.crop.h, crop_reason=reasons[v.ratio]))
    db.session.commit()
    metrics.observe_timings(timings)  # metrics: portal_task_stage_seconds{stage}
    metrics.campaign_finished("completed")


def _fail(campaign_id: str, attempt: int, reason: str) -> None:
    shutil.rmtree(_staging(campaign_id, attempt), ignore_errors=True)
    with contextlib.suppress(Fenced):  # a newer run owns the campaign; its outcome stands
        _fenced_update(campaign_id, attempt, status="failed", stage=None, finished_at=utcnow(),
                       error_message=reason)
        metrics.campaign_finished("failed")  # metrics: only when this run wrote the outcome
    log.info("campaign %s failed: %s", campaign_id, reason)


def _rollback() -> None:
    with contextlib.suppress(*DATABASE_AWAY):
        db.session.rollback()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def reconcile() -> dict[str, int]:
    """Re-enqueue campaigns that were never enqueued or whose run went silent; fail exhausted ones."""
    from portal.campaigns import enqueue  # the one place that enqueues

    config = current_app.config
    now = utcnow()
    c = Campaign
    lost_pending = sa.and_(c.status == "pending", sa.or_(
        sa.and_(c.enqueued_at.is_(None), c.created_at < now - timedelta(seconds=5)),
        c.enqueued_at < now - timedelta(seconds=config["REENQUEUE_SECONDS"])))
    # A silent run is re-sent once per lapse of its lease, and again after REENQUEUE_SECONDS if
    # that message was lost as well (a broker restarted empty, a worker killed while holding it).
    silent = sa.and_(c.status == "processing",
                     c.heartbeat_at < now - timedelta(seconds=config["LEASE_SECONDS"]),
                     sa.or_(c.enqueued_at.is_(None), c.enqueued_at < c.heartbeat_at,
                            c.enqueued_at < now - timedelta(seconds=config["REENQUEUE_SECONDS"])))
    rows = db.session.execute(sa.select(c).where(sa.or_(lost_pending, silent))
                              .order_by(c.created_at).limit(200)).scalars().all()
    counts = {"enqueued": 0, "failed": 0}
    for campaign in rows:
        if campaign.attempt >= config["MAX_ATTEMPTS"]:
            give_up_if_exhausted(campaign.id)
            counts["failed"] += 1
        elif enqueue(campaign):
            counts["enqueued"] += 1
        else:
            break  # the broker is down: the next round tries again, without waiting on each row
    swept = storage().sweep_incoming()  # uploads whose gunicorn worker was killed mid-request
    if any(counts.values()) or swept:
        log.info("reconciler: %s, %s stale upload(s) removed", counts, swept)
    return counts
