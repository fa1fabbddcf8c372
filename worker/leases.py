"""Which run owns a campaign: the claim, the heartbeat that keeps the lease, the fenced write.

The attempt counter is the fencing token (RELIABILITY.md §1): a run claims a campaign by
raising it, keeps its lease by beating, and writes only where the row still carries its
attempt. A run that lost its lease (the reconciler gave its campaign to another run) finds its
writes match no row and stops (Fenced).
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from portal import metrics
from portal.models import Campaign, db, utcnow

from . import outputs

log = logging.getLogger(__name__)


class Fenced(Exception):
    """This run no longer owns the campaign; stop quietly."""


# The database is away (stopped, stalled, restarting): the task retries, the reconciler covers the rest.
DATABASE_AWAY = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


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
        outputs.remove_leftovers(campaign_id)
        return attempt
    give_up_if_exhausted(campaign_id)
    log.info("campaign %s: not claimed by task %s (done, or another run owns it)", campaign_id, task_id)
    return None


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


def fenced_update(campaign_id: str, attempt: int, commit: bool = True, **values) -> None:
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
