"""Fetch a campaign's source image bytes, per source type.

Upload and local read our own disk; Dropbox and Firefly go out through worker/remote, whose
errors are sentences for the marketer (permanent) or transient (the pipeline retries later).
"""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from portal import library
from portal.models import Campaign
from portal.storage import storage

from .remote import SourceError, TransientSourceError
from .remote.dropbox_source import CONTENT_HOSTS, LINK_HOSTS, DropboxSettings, fetch_dropbox
from .remote.firefly import FireflySettings, generate
from .remote.placeholder import placeholder

__all__ = ["Source", "SourceError", "TransientSourceError", "fetch", "dropbox_settings", "firefly_settings"]


@dataclass(frozen=True)
class Source:
    data: bytes
    placeholder: bool = False  # a stand-in image, because Firefly is not configured


def fetch(campaign: Campaign) -> Source:
    config = current_app.config
    limit = config["MAX_CONTENT_LENGTH"]
    if campaign.source_type == "upload":
        try:
            return Source(storage().source_path(campaign.id).read_bytes())
        except FileNotFoundError:
            raise SourceError("The uploaded file is missing; please upload it again.") from None
    if campaign.source_type == "local":
        try:
            return Source(library.read(config["IMPORT_DIR"], campaign.source_path or "", limit))
        except library.NotImportable as e:
            raise SourceError(str(e)) from None
    if campaign.source_type == "dropbox":
        return Source(fetch_dropbox(campaign.source_path or "", dropbox_settings(config)))
    if campaign.source_type == "ai_generated":
        firefly = firefly_settings(config)
        if firefly is None:  # only when Firefly is not configured at all; a failing Firefly fails
            return Source(placeholder(campaign.ai_prompt or ""), placeholder=True)
        return Source(generate(campaign.ai_prompt or "", firefly, options=campaign.ai_options))
    raise SourceError(f"Unknown source type '{campaign.source_type}'.")


def dropbox_settings(config) -> DropboxSettings:
    return DropboxSettings(
        app_key=config["DROPBOX_APP_KEY"], app_secret=config["DROPBOX_APP_SECRET"],
        refresh_token=config["DROPBOX_REFRESH_TOKEN"], access_token=config["DROPBOX_ACCESS_TOKEN"],
        link_hosts=frozenset(config["DROPBOX_LINK_HOSTS"] or LINK_HOSTS),
        content_hosts=frozenset(config["DROPBOX_CONTENT_HOSTS"] or CONTENT_HOSTS),
        ca_bundle=config["DROPBOX_CA_BUNDLE"], timeout=config["REMOTE_TIMEOUT"],
        max_bytes=config["MAX_CONTENT_LENGTH"], allow_private=config["FETCH_ALLOW_PRIVATE"])


def firefly_settings(config) -> FireflySettings | None:
    if not (config["FIREFLY_CLIENT_ID"] and config["FIREFLY_CLIENT_SECRET"]):
        return None
    return FireflySettings(
        client_id=config["FIREFLY_CLIENT_ID"], client_secret=config["FIREFLY_CLIENT_SECRET"],
        ims_url=config["FIREFLY_IMS_URL"], api_base=config["FIREFLY_API_BASE"],
        model_version=config["FIREFLY_MODEL_VERSION"] or None, ca_bundle=config["FIREFLY_CA_BUNDLE"],
        timeout=config["REMOTE_TIMEOUT"], deadline=config["FIREFLY_DEADLINE"],
        max_bytes=config["MAX_CONTENT_LENGTH"], allow_private=config["FETCH_ALLOW_PRIVATE"],
        allowed_image_hosts=frozenset(config["FIREFLY_IMAGE_HOSTS"]))
