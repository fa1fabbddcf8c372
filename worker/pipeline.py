"""One campaign's run: claim the row, fetch, render, save, finish — every write fenced by attempt.

Who owns the campaign meanwhile is worker/leases.py's (claim, heartbeat, fenced writes); where
the outputs wait until the finish commits, worker/outputs.py's; lost runs are the
reconciler's (worker/reconciler.py).
"""
from __future__ import annotations

import contextlib
import logging
import time
from datetime import timedelta

import sqlalchemy as sa
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from portal import metrics
from portal.models import RATIOS, Campaign, Variant, db, utcnow
from portal.storage import storage

from . import boxes, cropping, imaging, outputs, sources
from .leases import DATABASE_AWAY, Fenced, Heartbeat, claim, fenced_update

log = logging.getLogger(__name__)


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
        fenced_update(campaign_id, attempt, status="pending", stage="waiting to retry", progress=0,
                      error_message=f"{error} Trying again in {round(countdown)} s.",
                      enqueued_at=utcnow() + timedelta(seconds=countdown))
    except Fenced:
        return
    log.info("campaign %s: attempt %s will retry in %.0f s", campaign_id, attempt, countdown)
    metrics.campaign_finished("retried")  # metrics
    raise RetryLater(countdown)


def _superseded(campaign_id: str, attempt: int) -> None:
    db.session.rollback()
    outputs.discard(campaign_id, attempt)  # our outputs never go live
    if db.session.get(Campaign, campaign_id) is None:
        # Deleted while we rendered: our writes may have recreated its folder after the delete.
        storage().delete(campaign_id)
        log.info("campaign %s was deleted during attempt %s", campaign_id, attempt)
    else:
        log.info("campaign %s: attempt %s was superseded", campaign_id, attempt)


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
    fenced_update(campaign_id, attempt, stage="rendering", progress=30, placeholder=source.placeholder)
    rendering = imaging.render(source.data, focal=focal, crops=manual, only=only, place=cropping.place,
                               max_pixels=config["MAX_IMAGE_PIXELS"], max_side=config["MAX_IMAGE_SIDE"])
    rendered = time.perf_counter()
    fenced_update(campaign_id, attempt, stage="saving", progress=80)
    outputs.save(campaign_id, attempt, rendering)
    saved = time.perf_counter()
    timings = {"fetch_ms": _ms(fetched - started), **{f"{k}_ms": round(v, 1) for k, v in
               rendering.timings_ms.items()}, "render_total_ms": _ms(rendered - fetched),
               "save_ms": _ms(saved - rendered)}
    _finish(campaign_id, attempt, reasons, rendering, timings, started)


def _finish(campaign_id: str, attempt: int, reasons: dict[str, str], rendering: imaging.Rendering,
            timings: dict, started: float) -> None:
    """Mark completed and replace the variant rows in one transaction, fenced by attempt."""
    timings["total_ms"] = _ms(time.perf_counter() - started)
    # The fenced UPDATE first: it also locks the row, so a concurrent delete waits for us.
    fenced_update(campaign_id, attempt, commit=False, status="completed", stage=None, progress=100,
                  finished_at=utcnow(), timings=timings, source_width=rendering.source_width,
                  source_height=rendering.source_height, rerender_ratios=None)
    # Still holding the row lock: no newer attempt can claim the campaign until we commit, so the
    # files that go live are exactly those of the attempt the row says completed.
    outputs.publish(campaign_id, attempt)
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
    outputs.discard(campaign_id, attempt)
    with contextlib.suppress(Fenced):  # a newer run owns the campaign; its outcome stands
        fenced_update(campaign_id, attempt, status="failed", stage=None, finished_at=utcnow(),
                      error_message=reason)
        metrics.campaign_finished("failed")  # metrics: only when this run wrote the outcome
    log.info("campaign %s failed: %s", campaign_id, reason)


def _rollback() -> None:
    with contextlib.suppress(*DATABASE_AWAY):
        db.session.rollback()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
