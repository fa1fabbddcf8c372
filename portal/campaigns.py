"""Campaign actions shared by the JSON API and the HTML pages (lists and counts: portal/listing.py).

This is the only module that enqueues work: the row is committed first and is
the outbox, so a broker outage never loses a campaign (the reconciler sends it later).
"""
from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.orm.attributes import set_committed_value
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import Conflict, NotFound

from worker.boxes import Box, check_crop
from worker.imaging import ImageRejected, sniff_format
from worker.remote.dropbox_source import LINK_HOSTS, validate_account_path, validate_link

from . import library
from .logs import current_request_id
from .auth import Account
from .models import RATIOS, Campaign, db, utcnow
from .schemas import Invalid, parse_campaign, parse_patch
from .storage import storage

log = logging.getLogger(__name__)

TASK_NAME = "worker.tasks.process_campaign"


def submit(user: Account, data: dict, upload: FileStorage | None = None) -> Campaign:
    """Validate a brief (and its upload), store it, commit, then enqueue."""
    if upload is not None and upload.filename is not None:
        data.setdefault("image_metadata", {}).setdefault("source_type", "upload")
    brief = parse_campaign(data, current_app.config["PROHIBITED_WORDS"])
    meta = brief.image_metadata
    _check_source(meta, upload)
    campaign = Campaign(
        source_filename=upload.filename[-255:] if meta.source_type == "upload" else None,
        owner_id=user.id,
        name=brief.name or _name_from(brief.description),
        description=brief.description, target_market=brief.target_market,
        campaign_message=brief.campaign_message, products_description=brief.products_description,
        generate_by_ai=brief.generate_by_ai, source_type=meta.source_type,
        source_path=meta.source_path if meta.source_type != "upload" else None,
        ai_prompt=meta.ai_prompt, focal_x=brief.focal_x, focal_y=brief.focal_y,
        ai_options=meta.ai_options.model_dump(exclude_none=True) or None if meta.ai_options else None)
    db.session.add(campaign)
    db.session.flush()  # assigns the id the upload is stored under
    # The row is new and ours: after the commit nothing needs reading back (by default every
    # attribute expires, and the id alone for the 202 cost a SELECT of the whole row).
    db.session().expire_on_commit = False
    try:
        if meta.source_type == "upload":
            storage().save_upload(campaign.id, upload.stream, current_app.config["MAX_CONTENT_LENGTH"])
        db.session.commit()
    except BaseException:
        db.session.rollback()
        storage().delete(campaign.id)
        raise  # a full disk is answered by portal/errors.py (503)
    enqueue(campaign)
    return campaign


def _name_from(description: str) -> str:
    lines = description.strip().splitlines()
    first_line = lines[0] if lines else "Untitled campaign"
    return first_line if len(first_line) <= 120 else first_line[:119] + "…"


def _check_source(meta, upload: FileStorage | None) -> None:
    """Refuse, before anything is stored, a source that can be seen to be unusable now."""
    config = current_app.config
    try:
        if meta.source_type == "upload":
            _check_upload(upload)
        elif meta.source_type == "local":
            library.resolve(config["IMPORT_DIR"], meta.source_path)
        elif meta.source_type == "dropbox" and meta.source_path.startswith("/"):  # an account path
            validate_account_path(meta.source_path)
        elif meta.source_type == "dropbox":
            validate_link(meta.source_path, config["DROPBOX_LINK_HOSTS"] or LINK_HOSTS)
    except ValueError as e:  # NotImportable is one too
        raise Invalid({"image_metadata.source_path": str(e)}) from None


def _check_upload(upload: FileStorage | None) -> None:
    """The file must be there and be an image by its bytes (never by its name or Content-Type)."""
    if upload is None or not upload.filename:
        raise Invalid({"image": "Choose an image file to upload."})
    head = upload.stream.read(16)
    upload.stream.seek(0)
    if sniff_format(head) is None:
        message = "The file is not a JPEG, PNG or WebP image."
        raise Invalid({"image": message}, status=415, message=message)


def enqueue(campaign: Campaign) -> bool:
    """Send the campaign's id to the workers; False (and the row stays the outbox) if the broker is down."""
    celery = current_app.extensions["celery"]
    try:
        celery.send_task(TASK_NAME, args=[campaign.id], retry=True,
                         retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2},
                         headers={"request_id": current_request_id()})  # logs: the task logs this id
    except Exception as e:  # any broker failure: the reconciler will send it later
        log.warning("campaign %s not enqueued, broker unavailable: %s", campaign.id, type(e).__name__)
        return False
    _mark_enqueued(campaign)
    return True


def _mark_enqueued(campaign: Campaign) -> None:
    """Record the send on its own connection: if the database went away since the campaign was
    committed, the campaign is still created and sent (the worker claims it either way), so the
    request must not fail, nor the session lose the loaded row."""
    now = utcnow()
    try:
        with db.engine.begin() as conn:
            conn.execute(sa.update(Campaign.__table__).where(Campaign.__table__.c.id == campaign.id)
                         .values(enqueued_at=now))
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as e:
        log.warning("campaign %s sent, but its enqueued_at not recorded: %s", campaign.id, type(e).__name__)
        return
    set_committed_value(campaign, "enqueued_at", now)


def get(user: Account, campaign_id: str) -> Campaign:
    """The campaign if this user may see it; 404 otherwise (never 403: ids stay secret)."""
    campaign = db.session.get(Campaign, campaign_id)
    if campaign is None or not (user.is_admin or campaign.owner_id == user.id):
        raise NotFound("No such campaign.")
    return campaign


def retry(user: Account, campaign_id: str) -> Campaign:
    campaign = get(user, campaign_id)
    if campaign.status != "failed":
        raise Conflict(f"Only a failed campaign can be retried; this one is {campaign.status}.")
    campaign.restart()
    db.session.commit()
    enqueue(campaign)
    return campaign


def recrop(user: Account, campaign_id: str, data: object) -> Campaign:
    """Move the focal point and/or set crops by hand, then render again (a new run, same lifecycle).

    A new focal point re-renders every ratio without a manual crop; a changed crop re-renders
    only its own ratio when the others are already done.
    """
    patch = parse_patch(data)
    campaign = get(user, campaign_id)
    if not campaign.is_done:
        raise Conflict(f"The campaign is {campaign.status}; change its crops once it has finished.")
    changed: set[str] = set()
    if "focal_x" in patch.model_fields_set:
        campaign.focal_x, campaign.focal_y = patch.focal_x, patch.focal_y
        changed |= {r for r in RATIOS if not campaign.crop_override(r)}
    if patch.crops:
        changed |= _apply_crops(campaign, patch.crops)
    partial = campaign.status == "completed" and len(campaign.variants) == len(RATIOS)
    campaign.restart()
    campaign.rerender_ratios = sorted(changed, key=RATIOS.index) if partial and changed else None
    db.session.commit()
    enqueue(campaign)
    return campaign


def _apply_crops(campaign: Campaign, crops: dict) -> set[str]:
    if not campaign.source_width:
        raise Conflict("Crops can be set once the source image has been processed.")
    overrides = dict(campaign.crop_overrides or {})
    for ratio, crop in crops.items():
        if crop is None:
            overrides.pop(ratio, None)
            continue
        box = Box(crop.x, crop.y, crop.w, crop.h)
        try:
            check_crop(ratio, box, campaign.source_width, campaign.source_height)
        except ImageRejected as e:
            raise Invalid({f"crops.{ratio}": str(e)}) from None
        overrides[ratio] = {"x": box.x, "y": box.y, "w": box.w, "h": box.h}
    campaign.crop_overrides = overrides or None
    return set(crops)


def delete(user: Account, campaign_id: str) -> None:
    campaign = get(user, campaign_id)
    db.session.delete(campaign)
    db.session.commit()
    storage().delete(campaign_id)
