"""Fetch a campaign's source image bytes, per source type."""
from __future__ import annotations

from flask import current_app

from portal import library
from portal.models import Campaign
from portal.storage import storage


class SourceError(Exception):
    """The source cannot be had; str(e) is shown to the user and the campaign fails."""


def fetch(campaign: Campaign) -> bytes:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if campaign.source_type == "upload":
        try:
            return storage().source_path(campaign.id).read_bytes()
        except FileNotFoundError:
            raise SourceError("The uploaded file is missing; please upload it again.") from None
    if campaign.source_type == "local":
        try:
            return library.read(current_app.config["IMPORT_DIR"], campaign.source_path or "", limit)
        except library.NotImportable as e:
            raise SourceError(str(e)) from None
    if campaign.source_type == "dropbox":
        # Built in the sources issue (#4); until then say so instead of failing obscurely.
        raise SourceError("Dropbox links are not available on this server yet.")
    if campaign.source_type == "ai_generated":
        raise SourceError("Image generation with Adobe Firefly is not available on this server yet.")
    raise SourceError(f"Unknown source type '{campaign.source_type}'.")
