"""The API's OpenAPI 3.1 document; request schemas come from the pydantic models themselves."""
from __future__ import annotations

from functools import cache

from .models import STATUSES
from .schemas import CampaignIn, CampaignPatch

_REF = "#/components/schemas/{model}"


def _json(schema_name: str) -> dict:
    return {"application/json": {"schema": {"$ref": _REF.format(model=schema_name)}}}


def _error(description: str) -> dict:
    return {"description": description, "content": _json("Error")}


_UNAVAILABLE = {"description": "The database is unreachable; try again after Retry-After seconds",
                "headers": {"Retry-After": {"description": "Seconds to wait before retrying", "required": True,
                                            "schema": {"type": "integer", "minimum": 1}}},
                "content": _json("Error")}
_METHODS = ("get", "put", "post", "patch", "delete")

_ID = {"name": "campaign_id", "in": "path", "required": True, "schema": {"type": "string"}}
_SLUG = {"name": "slug", "in": "path", "required": True,
         "schema": {"type": "string", "enum": ["1x1", "9x16", "16x9"]}}
_JPEG = {"description": "JPEG image", "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}
_COMMON = {"401": _error("Not signed in"), "404": _error("No such campaign (or not yours)")}
_CROSS_SITE = {"403": _error("Refused: sent by a page on another site")}
_PAGE = {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}
_PER_PAGE = {"name": "per_page", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1_000_000}}

_VARIANT = {"type": "object", "properties": {
    "ratio": {"type": "string", "enum": ["1:1", "9:16", "16:9"]}, "width": {"type": "integer"},
    "height": {"type": "integer"}, "bytes": {"type": "integer"}, "url": {"type": "string"},
    "preview_url": {"type": "string"}, "crop_reason": {"type": "string"},
    "crop": {"type": "object", "properties": {k: {"type": "integer"} for k in "xywh"}}}}

_CAMPAIGN = {"type": "object", "required": ["id", "status", "variants", "links"], "properties": {
    "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
    "target_market": {"type": "string"}, "campaign_message": {"type": "string"},
    "products_description": {"type": "string"}, "generate_by_ai": {"type": "boolean"},
    "image_metadata": {"type": "object"}, "focal_x": {"type": ["number", "null"]},
    "focal_y": {"type": ["number", "null"]}, "crop_overrides": {"type": ["object", "null"]},
    "placeholder": {"type": "boolean"}, "status": {"type": "string", "enum": list(STATUSES)},
    "stage": {"type": ["string", "null"]}, "progress": {"type": "integer"},
    "error_message": {"type": ["string", "null"]}, "attempt": {"type": "integer"},
    "source": {"type": "object"}, "timings": {"type": ["object", "null"]},
    "created_at": {"type": "string"}, "updated_at": {"type": "string"},
    "started_at": {"type": ["string", "null"]}, "finished_at": {"type": ["string", "null"]},
    "variants": {"type": "array", "items": {"$ref": _REF.format(model="Variant")}},
    "processed_images": {"type": "object"}, "links": {"type": "object"}}}

_MULTIPART = {"type": "object", "required": ["image", "description", "target_market",
                                             "campaign_message", "products_description"],
              "properties": {"image": {"type": "string", "format": "binary"},
                             **{k: {"type": "string"} for k in (
                                 "name", "description", "target_market", "campaign_message",
                                 "products_description", "source_type", "source_path", "ai_prompt")},
                             "focal_x": {"type": "number"}, "focal_y": {"type": "number"}}}


def _paths() -> dict:
    accepted = {"description": "Accepted; poll the campaign", "content": _json("Accepted")}
    return {
        "/api/campaigns": {
            "post": {"summary": "Create a campaign (JSON brief, or multipart upload in field 'image')",
                     "requestBody": {"required": True, "content": {
                         **_json("CampaignIn"), "multipart/form-data": {"schema": _MULTIPART}}},
                     "responses": {"202": accepted, "400": _error("Malformed body"), **_CROSS_SITE,
                                   "401": _error("Not signed in"), "413": _error("Upload too large"),
                                   "415": _error("Not a JPEG, PNG or WebP"),
                                   "422": _error("Invalid fields")}},
            "get": {"summary": "List campaigns, newest first",
                    "parameters": [
                        _PAGE, _PER_PAGE,
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATUSES)}},
                        {"name": "q", "in": "query", "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "A page", "content": _json("CampaignPage")},
                                  "401": _error("Not signed in"), "422": _error("Invalid query")}}},
        "/api/campaigns/{campaign_id}": {
            "parameters": [_ID],
            "get": {"summary": "A campaign with its status and variants",
                    "responses": {"200": {"description": "The campaign", "content": _json("Campaign")}, **_COMMON}},
            "patch": {"summary": "Move the focal point and/or set crops by hand; renders again",
                      "requestBody": {"required": True, "content": _json("CampaignPatch")},
                      "responses": {"202": accepted, **_CROSS_SITE,
                                    "409": _error("Still running, or not processed yet"),
                                    "422": _error("Invalid fields"), **_COMMON}},
            "delete": {"summary": "Delete a campaign and its files",
                       "responses": {"204": {"description": "Deleted"}, **_CROSS_SITE, **_COMMON}}},
        "/api/campaigns/{campaign_id}/retry": {
            "parameters": [_ID],
            "post": {"summary": "Run a failed campaign again",
                     "responses": {"202": accepted, "409": _error("Not failed"), **_CROSS_SITE, **_COMMON}}},
        "/api/campaigns/{campaign_id}/variants/{slug}": {
            "parameters": [_ID, _SLUG],
            "get": {"summary": "Download one variant (full size)",
                    "responses": {"200": _JPEG, "409": _error("Not completed"), **_COMMON}}},
        "/api/campaigns/{campaign_id}/variants/{slug}/preview": {
            "parameters": [_ID, _SLUG],
            "get": {"summary": "A small preview of one variant",
                    "responses": {"200": _JPEG, "409": _error("Not completed"), **_COMMON}}},
        "/api/campaigns/{campaign_id}/source": {
            "parameters": [_ID],
            "get": {"summary": "The oriented source image, re-encoded, for showing crop boxes",
                    "responses": {"200": _JPEG, **_COMMON}}},
        "/api/campaigns/{campaign_id}/variants.zip": {
            "parameters": [_ID],
            "get": {"summary": "All three variants as a ZIP",
                    "responses": {"200": {"description": "ZIP archive", "content": {
                        "application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                        "409": _error("Not completed"), **_COMMON}}},
        "/api/library": {"get": {
            "summary": "Images in the server import folder (PORTAL_IMPORT_DIR), one folder at a time",
            "parameters": [{"name": "folder", "in": "query", "schema": {"type": "string"}}, _PAGE, _PER_PAGE],
            "responses": {"200": {"description": "A page of the folder", "content": _json("LibraryPage")},
                          "401": _error("Not signed in"), "422": _error("No such folder")}}},
        "/api/library/thumbnail": {"get": {
            "summary": "A small re-encoded thumbnail of an importable image",
            "parameters": [{"name": "path", "in": "query", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _JPEG, "401": _error("Not signed in"), "404": _error("No such image"),
                          "422": _error("Not a usable image")}}},
        "/api/me": {"get": {"summary": "Who is signed in", "responses": {
            "200": {"description": "The user", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"username": {"type": "string"},
                                                 "is_admin": {"type": "boolean"}}}}}},
            "401": _error("Not signed in")}}},
    }


@cache
def document() -> dict:
    brief = CampaignIn.model_json_schema(ref_template=_REF)
    patch = CampaignPatch.model_json_schema(ref_template=_REF)
    schemas = {**brief.pop("$defs", {}), **patch.pop("$defs", {})}
    schemas.update({
        "CampaignIn": brief, "CampaignPatch": patch, "Variant": _VARIANT, "Campaign": _CAMPAIGN,
        "Accepted": {"type": "object", "required": ["id", "status", "links"], "properties": {
            "id": {"type": "string"}, "status": {"type": "string"}, "links": {"type": "object"}}},
        "CampaignPage": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"$ref": _REF.format(model="Campaign")}},
            "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"},
            "pages": {"type": "integer"}, "links": {"type": "object"}}},
        "LibraryPage": {"type": "object", "properties": {
            "folder": {"type": "string"}, "parent": {"type": ["string", "null"]},
            "folders": {"type": "array", "items": {"type": "string"}},
            "images": {"type": "array", "items": {"type": "object", "properties": {
                "path": {"type": "string"}, "name": {"type": "string"}, "bytes": {"type": "integer"},
                "thumbnail_url": {"type": "string"}}}},
            "page": {"type": "integer"}, "per_page": {"type": "integer"}, "total": {"type": "integer"},
            "pages": {"type": "integer"}}},
        "Error": {"type": "object", "required": ["error", "message"], "properties": {
            "error": {"type": "string"}, "message": {"type": "string"},
            "fields": {"type": "object", "additionalProperties": {"type": "string"}}}},
    })
    return {
        "openapi": "3.1.0",
        "info": {"title": "Campaign portal API", "version": "1.0.0",
                 "description": "Turn one source image into 1:1, 9:16 and 16:9 campaign creatives."},
        "components": {"schemas": schemas,
                       "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}}},
        "security": [{"basic": []}],
        "paths": _with_unavailable(_paths()),
    }


def _with_unavailable(paths: dict) -> dict:
    """Every operation may answer 503 (with Retry-After) while the database is down."""
    for item in paths.values():
        for method in _METHODS:
            if method in item:
                item[method]["responses"].setdefault("503", _UNAVAILABLE)
    return paths
