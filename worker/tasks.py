"""Thin Celery tasks: they take ids and hand over to the pipeline (or the reconciler)."""
from __future__ import annotations

from celery import shared_task

from . import pipeline, reconciler
from .leases import DATABASE_AWAY


@shared_task(bind=True, name="worker.tasks.process_campaign",
             autoretry_for=DATABASE_AWAY, retry_backoff=True,
             retry_backoff_max=120, retry_jitter=True, max_retries=5)
def process_campaign(self, campaign_id: str) -> None:
    try:
        pipeline.process(campaign_id, self.request.id)
    except pipeline.RetryLater as later:
        # Same task id, so the redelivery may claim the row it left pending; the attempt
        # counter (not Celery's) bounds how often.
        raise self.retry(countdown=later.countdown, max_retries=None) from None


@shared_task(name="worker.tasks.reconcile")
def reconcile() -> dict[str, int]:
    return reconciler.reconcile()
