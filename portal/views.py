"""HTML pages for people. Thin: they call the same functions as the JSON API.

A minimal set for now (list, new campaign, campaign page); the full portal is issue #3.
"""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from . import campaigns
from .api import form_to_brief
from .auth import current_user
from .schemas import Invalid

bp = Blueprint("views", __name__)


@bp.get("/")
def dashboard():
    page = campaigns.list_for(current_user(), page=request.args.get("page", 1, type=int),
                              status=request.args.get("status") or None)
    return render_template("dashboard.html", page=page, counts=campaigns.counts_for(current_user()))


@bp.route("/campaigns/new", methods=["GET", "POST"])
def new_campaign():
    if request.method == "GET":
        return render_template("new.html", form={}, errors={})
    try:
        campaign = campaigns.submit(current_user(), form_to_brief(request.form),
                                    request.files.get("image"))
    except Invalid as e:
        return render_template("new.html", form=request.form, errors=e.fields), 422
    return redirect(url_for("views.campaign_page", campaign_id=campaign.id), 303)


@bp.get("/campaigns/<campaign_id>")
def campaign_page(campaign_id: str):
    campaign = campaigns.get(current_user(), campaign_id)
    return render_template("campaign.html", campaign=campaign)


@bp.post("/campaigns/<campaign_id>/retry")
def retry(campaign_id: str):
    campaigns.retry(current_user(), campaign_id)
    return redirect(url_for("views.campaign_page", campaign_id=campaign_id), 303)


@bp.post("/campaigns/<campaign_id>/delete")
def delete(campaign_id: str):
    campaigns.delete(current_user(), campaign_id)
    return redirect(url_for("views.dashboard"), 303)
