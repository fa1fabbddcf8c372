"""The reconciler (a beat task): campaigns whose message or run was lost are sent again.

The row is the outbox (RELIABILITY.md): a campaign committed but never enqueued, or whose run
stopped beating, is re-sent; one that used up its attempts is failed with a reason.
"""
from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from portal.models import Campaign, db, utcnow
from portal.storage import storage

from .leases import give_up_if_exhausted

log = logging.getLogger(__name__)


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
