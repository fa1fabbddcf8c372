"""JSON API for scripts, under /api. Thin: every action is a function of portal.campaigns."""
from __future__ import annotations

import io
import zipfile

from flask import Blueprint, abort, jsonify, render_template, request, send_file, url_for
from werkzeug.exceptions import BadRequest

from . import campaigns, listing
from .auth import current_user
from .models import RATIOS, Campaign, Variant
from .openapi import document
from .schemas import Invalid
from .storage import SLUGS, storage

bp = Blueprint("api", __name__, url_prefix="/api")
RATIO_OF_SLUG = {slug: ratio for ratio, slug in SLUGS.items()}
MAX_PAGE_NUMBER = 1_000_000


@bp.before_request
def refuse_cross_site():
    """Browsers resend cached Basic credentials cross-site: refuse unsafe requests from other sites.

    Scripts (curl) send neither header; browsers send at least one of them.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return None
    site = request.headers.get("Sec-Fetch-Site")
    origin = request.headers.get("Origin")
    if site is not None and site not in ("same-origin", "none"):
        abort(403, "Cross-site requests are not allowed.")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        abort(403, "Cross-site requests are not allowed.")
    return None


@bp.post("/campaigns")
def create_campaign():
    if request.mimetype == "application/json":
        data = request.get_json(silent=True)
        if data is None:
            raise BadRequest("The body is not valid JSON.")
        upload = None
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data, upload = form_to_brief(request.form), request.files.get("image")
    else:
        raise Invalid({"body": "Send JSON, or multipart/form-data with the file in 'image'."})
    campaign = campaigns.submit(current_user(), data, upload)
    return _accepted(campaign), 202, {"Location": url_for("api.get_campaign", campaign_id=campaign.id)}


def _accepted(campaign: Campaign):
    """The 202 body. It always says pending: a fast worker may already have claimed the row,
    and reading it back here would make the answer depend on that race."""
    return jsonify(id=campaign.id, status="pending",
                   links={"self": url_for("api.get_campaign", campaign_id=campaign.id)})


def form_to_brief(form) -> dict:
    """Flat form fields (the portal form, multipart scripts) in the JSON body's shape.

    The portal's form has one path field per source panel (library_path, dropbox_url);
    scripts send source_path.
    """
    meta_keys = ("source_type", "source_path", "ai_prompt", "library_path", "dropbox_url")
    brief = {k: v for k, v in form.items() if k not in meta_keys and k != "csrf_token"}
    source_type = form.get("source_type", "")
    panel_path = {"local": form.get("library_path"), "dropbox": form.get("dropbox_url")}.get(source_type)
    meta = {"source_type": source_type, "source_path": form.get("source_path") or panel_path,
            "ai_prompt": form.get("ai_prompt")}
    brief["image_metadata"] = {k: v for k, v in meta.items() if v}
    for key in ("focal_x", "focal_y", "name"):
        if brief.get(key) == "":
            del brief[key]
    return brief


@bp.get("/campaigns")
def list_campaigns():
    page = listing.list_for(current_user(), page=int_arg("page", 1),
                            per_page=int_arg("per_page", None),
                            status=request.args.get("status") or None,
                            query=request.args.get("q") or None)
    def page_url(n: int) -> str:
        return url_for("api.list_campaigns", **{**request.args, "page": n})
    return jsonify(items=[campaign_json(c) for c in page.items], page=page.page,
                   per_page=page.per_page, total=page.total, pages=page.pages,
                   links={"next": page_url(page.page + 1) if page.page < page.pages else None,
                          "prev": page_url(page.page - 1) if page.page > 1 else None})


def int_arg(name: str, default: int | None) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    # ASCII digits only ("²".isdigit() is true), and a bound, so OFFSET cannot overflow the database.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE_NUMBER:
        raise Invalid({name: f"Must be a whole number from 1 to {MAX_PAGE_NUMBER}."})
    return int(raw)


@bp.get("/campaigns/<campaign_id>")
def get_campaign(campaign_id: str):
    return jsonify(campaign_json(campaigns.get(current_user(), campaign_id)))


@bp.patch("/campaigns/<campaign_id>")
def patch_campaign(campaign_id: str):
    """Move the focal point or set crops by hand; the campaign renders again (202)."""
    return _accepted(campaigns.recrop(current_user(), campaign_id, request.get_json(silent=True))), 202


@bp.delete("/campaigns/<campaign_id>")
def delete_campaign(campaign_id: str):
    campaigns.delete(current_user(), campaign_id)
    return "", 204


@bp.post("/campaigns/<campaign_id>/retry")
def retry_campaign(campaign_id: str):
    return _accepted(campaigns.retry(current_user(), campaign_id)), 202


@bp.get("/campaigns/<campaign_id>/variants/<slug>")
def download_variant(campaign_id: str, slug: str):
    campaign, ratio = _completed_variant(campaign_id, slug)
    path = storage().variant_path(campaign.id, ratio)
    return send_file(path, mimetype="image/jpeg", as_attachment=True, conditional=True,
                     download_name=f"{_file_stem(campaign)}-{slug}.jpg")


@bp.get("/campaigns/<campaign_id>/variants/<slug>/preview")
def preview_variant(campaign_id: str, slug: str):
    campaign, ratio = _completed_variant(campaign_id, slug)
    return send_file(storage().variant_path(campaign.id, ratio, preview=True),
                     mimetype="image/jpeg", conditional=True, max_age=3600)


@bp.get("/campaigns/<campaign_id>/source")
def source_preview(campaign_id: str):
    """The oriented, re-encoded source (never the uploaded bytes), for drawing crop boxes on."""
    campaign = campaigns.get(current_user(), campaign_id)
    path = storage().source_preview_path(campaign.id)
    if not path.is_file():
        abort(404, "The source preview is made when the campaign is processed.")
    return send_file(path, mimetype="image/jpeg", conditional=True, max_age=3600)


@bp.get("/campaigns/<campaign_id>/variants.zip")
def download_zip(campaign_id: str):
    campaign = campaigns.get(current_user(), campaign_id)
    if campaign.status != "completed":
        abort(409, f"The campaign is {campaign.status}; its files are ready once it is completed.")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # JPEGs do not compress
        for variant in campaign.variants:
            archive.write(storage().variant_path(campaign.id, variant.ratio),
                          f"{_file_stem(campaign)}-{variant.slug}.jpg")
    buffer.seek(0)
    return send_file(buffer, mimetype="application/zip", as_attachment=True,
                     download_name=f"{_file_stem(campaign)}.zip")


def _completed_variant(campaign_id: str, slug: str) -> tuple[Campaign, str]:
    campaign = campaigns.get(current_user(), campaign_id)
    ratio = RATIO_OF_SLUG.get(slug)
    if ratio is None:
        abort(404, f"No such format; use one of {', '.join(SLUGS.values())}.")
    if campaign.status != "completed":
        abort(409, f"The campaign is {campaign.status}; its files are ready once it is completed.")
    return campaign, ratio


def _file_stem(campaign: Campaign) -> str:
    words = "".join(ch if ch.isalnum() else "-" for ch in campaign.name.lower()).split("-")
    return ("-".join(w for w in words if w)[:60] or "campaign") + f"-{campaign.id[:8]}"


@bp.get("/me")
def me():
    user = current_user()
    return jsonify(username=user.username, is_admin=user.is_admin)


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())


@bp.get("/docs")
def docs():
    return render_template("api_docs.html", spec=document())


def _links(campaign: Campaign) -> dict:
    links = {"self": url_for("api.get_campaign", campaign_id=campaign.id)}
    if campaign.status == "completed":
        links["zip"] = url_for("api.download_zip", campaign_id=campaign.id)
    if campaign.status == "failed":
        links["retry"] = url_for("api.retry_campaign", campaign_id=campaign.id)
    return links


def variant_json(campaign: Campaign, variant: Variant) -> dict:
    return {"ratio": variant.ratio, "width": variant.width, "height": variant.height,
            "bytes": variant.bytes, "crop_reason": variant.crop_reason,
            "url": url_for("api.download_variant", campaign_id=campaign.id, slug=variant.slug),
            "preview_url": url_for("api.preview_variant", campaign_id=campaign.id, slug=variant.slug),
            "crop": {"x": variant.crop_x, "y": variant.crop_y, "w": variant.crop_w, "h": variant.crop_h}}


def campaign_json(c: Campaign) -> dict:
    variants = [variant_json(c, v) for v in c.variants] if c.status == "completed" else []
    by_ratio = {v["ratio"]: v["url"] for v in variants}
    return {
        "id": c.id, "name": c.name, "description": c.description, "target_market": c.target_market,
        "campaign_message": c.campaign_message, "products_description": c.products_description,
        "generate_by_ai": c.generate_by_ai,
        "image_metadata": {"source_type": c.source_type, "source_path": c.source_path,
                           "ai_prompt": c.ai_prompt, "ai_options": c.ai_options, "filename": c.source_filename},
        "focal_x": c.focal_x, "focal_y": c.focal_y, "crop_overrides": c.crop_overrides,
        "placeholder": c.placeholder,
        "status": c.status, "stage": c.stage, "progress": c.progress,
        "error_message": c.error_message, "attempt": c.attempt,
        "source": {"width": c.source_width, "height": c.source_height},
        "timings": c.timings, "created_at": _iso(c.created_at), "updated_at": _iso(c.updated_at),
        "started_at": _iso(c.started_at), "finished_at": _iso(c.finished_at),
        "variants": variants,
        "processed_images": {f"ratio_{r.replace(':', '_')}": by_ratio.get(r) for r in RATIOS},
        "links": _links(c),
    }


def _iso(value) -> str | None:
    return value.isoformat() + "Z" if value else None
