"""HTML pages for people. Thin: they call the same functions as the JSON API (portal.campaigns)."""
from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template, request, url_for

from . import campaigns, listing
from .api import form_to_brief
from .auth import current_user
from .htmx import is_htmx, page_or_fragment, redirect_to
from .library_api import folder_listing
from .models import RATIOS, STATUSES, utcnow
from .schemas import Invalid

bp = Blueprint("views", __name__)


@bp.get("/")
def dashboard():
    status = request.args.get("status") or None
    query = (request.args.get("q") or "").strip()[:100] or None
    try:
        page = listing.list_for(current_user(), page=request.args.get("page", 1, type=int),
                                status=status, query=query)
    except Invalid:
        status, page = None, listing.list_for(current_user(), query=query)
    return page_or_fragment("dashboard.html", "_campaign_list.html", page=page, status=status, query=query,
                            statuses=STATUSES, counts=listing.counts_for(current_user()))


@bp.route("/campaigns/new", methods=["GET", "POST"])
def new_campaign():
    if request.method == "GET":
        return _form({}, {}, 200)
    try:
        campaign = campaigns.submit(current_user(), form_to_brief(request.form), request.files.get("image"))
    except Invalid as e:
        return _form(request.form, e.fields, e.status)
    return redirect_to(url_for("views.campaign_page", campaign_id=campaign.id))


def _form(form, errors: dict, code: int):
    try:
        listing = folder_listing(request.args.get("folder", ""), 1, 48)
    except Invalid:
        listing = folder_listing("", 1, 48)
    return page_or_fragment("new.html", "_campaign_form.html", code, form=form, errors=errors,
                            listing=listing, max_upload=current_app.config["MAX_CONTENT_LENGTH"])


@bp.get("/library/picker")
def library_picker():
    listing = folder_listing(request.args.get("folder", ""), request.args.get("page", 1, type=int), 48)
    return page_or_fragment("library.html", "_library_picker.html", listing=listing,
                            selected=request.args.get("selected"))


@bp.get("/campaigns/<campaign_id>")
def campaign_page(campaign_id: str):
    campaign = campaigns.get(current_user(), campaign_id)
    return page_or_fragment("campaign.html", "_status.html", campaign=campaign)


@bp.get("/campaigns/<campaign_id>/status")
def campaign_status(campaign_id: str):
    """The polled status panel; 286 tells htmx to stop polling once the campaign is done."""
    campaign = campaigns.get(current_user(), campaign_id)
    if not is_htmx():
        return page_or_fragment("campaign.html", "_status.html", campaign=campaign)
    response = make_response(render_template("_status.html", campaign=campaign),
                             286 if campaign.is_done else 200)
    response.vary.add("HX-Request")
    return response


@bp.post("/campaigns/<campaign_id>/retry")
def retry(campaign_id: str):
    campaign = campaigns.retry(current_user(), campaign_id)
    if is_htmx():
        return page_or_fragment("campaign.html", "_status.html", campaign=campaign)
    return redirect_to(url_for("views.campaign_page", campaign_id=campaign_id))


@bp.post("/campaigns/<campaign_id>/recrop")
def recrop(campaign_id: str):
    """The crop editor: a focal point (click), one ratio's box (drag), or back to automatic."""
    form = request.form
    if form.get("reset"):
        change = {"crops": {form["reset"]: None}}
    elif form.get("ratio"):
        box = {k: form.get(k, type=float) for k in ("x", "y", "w", "h")}
        if None in box.values():
            raise Invalid({"crops": "Give the box as x, y, w and h in source pixels."})
        change = {"crops": {form["ratio"]: {k: round(v) for k, v in box.items()}}}
    else:
        change = {"focal_x": form.get("focal_x", type=float), "focal_y": form.get("focal_y", type=float)}
        if None in change.values():
            raise Invalid({"focal_x": "Give the focal point as two numbers from 0 to 1."})
    try:
        campaign = campaigns.recrop(current_user(), campaign_id, change)
    except Invalid as e:  # shown in the panel, next to the editor
        campaign = campaigns.get(current_user(), campaign_id)
        return page_or_fragment("campaign.html", "_status.html", 422, campaign=campaign,
                                crop_error=" ".join(e.fields.values()))
    if is_htmx():
        return page_or_fragment("campaign.html", "_status.html", campaign=campaign)
    return redirect_to(url_for("views.campaign_page", campaign_id=campaign_id))


@bp.route("/campaigns/<campaign_id>/delete", methods=["GET", "POST"])
def delete(campaign_id: str):
    if request.method == "GET":  # the confirmation step, with or without JavaScript
        return render_template("confirm_delete.html", campaign=campaigns.get(current_user(), campaign_id))
    campaigns.delete(current_user(), campaign_id)
    return redirect_to(url_for("views.dashboard"))


@bp.get("/gallery")
def gallery():
    ratio = request.args.get("ratio") if request.args.get("ratio") in RATIOS else None
    campaign_id = request.args.get("campaign") or None
    page = listing.variants_for(current_user(), page=request.args.get("page", 1, type=int),
                                per_page=24, ratio=ratio, campaign_id=campaign_id)
    choices = listing.list_for(current_user(), per_page=100, status="completed").items
    return page_or_fragment("gallery.html", "_gallery_grid.html", page=page, ratio=ratio,
                            campaign_id=campaign_id, ratios=RATIOS, choices=choices)


@bp.app_template_filter("ago")
def ago(moment) -> str:
    seconds = max(0, int((utcnow() - moment).total_seconds()))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''} ago"
    return "just now"
