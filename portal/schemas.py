"""Validation of campaign briefs, shared by the JSON API and the HTML form."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Invalid(Exception):
    """Offending fields, each with a message for a person: {"image_metadata.source_path": "..."}.
    422 unless a more precise status fits (415 for an upload that is not an image)."""

    def __init__(self, fields: dict[str, str], status: int = 422, message: str | None = None) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields, self.status = fields, status
        self.message = message or "Some fields need attention."


class FireflyOptions(BaseModel):
    """Generation options passed to Adobe Firefly with the prompt (its own field names)."""
    model_config = ConfigDict(extra="forbid")

    contentClass: Literal["photo", "art"] | None = None  # noqa: N815 - Firefly's spelling
    negativePrompt: str | None = Field(default=None, max_length=1024)  # noqa: N815
    seeds: list[int] | None = Field(default=None, min_length=1, max_length=1)
    visualIntensity: int | None = Field(default=None, ge=2, le=10)  # noqa: N815
    promptBiasingLocaleCode: str | None = Field(default=None, pattern=r"^[a-z]{2}-[A-Z]{2}$")  # noqa: N815


class ImageMetadata(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    source_type: Literal["upload", "local", "dropbox", "ai_generated"]
    source_path: str | None = Field(default=None, max_length=1024)
    ai_prompt: str | None = Field(default=None, max_length=1000)
    ai_options: FireflyOptions | None = None

    @model_validator(mode="after")
    def _needs_its_field(self) -> ImageMetadata:
        if self.source_type in ("local", "dropbox") and not self.source_path:
            raise _field_error("source_path", f"A {self.source_type} source needs source_path.")
        if self.source_type == "ai_generated" and not self.ai_prompt:
            raise _field_error("ai_prompt", "An ai_generated source needs ai_prompt.")
        return self


class CampaignIn(BaseModel):
    """The original design's request body, plus an optional name and focal point."""
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str | None = Field(default=None, max_length=120)
    description: str = Field(min_length=1, max_length=2000)
    target_market: str = Field(min_length=1, max_length=200)
    campaign_message: str = Field(min_length=1, max_length=500)
    products_description: str = Field(min_length=1, max_length=2000)
    image_metadata: ImageMetadata
    generate_by_ai: bool = False
    focal_x: float | None = Field(default=None, ge=0, le=1)
    focal_y: float | None = Field(default=None, ge=0, le=1)

    @field_validator("description", "target_market", "campaign_message", "products_description")
    @classmethod
    def _has_text(cls, value: str) -> str:
        # Pydantic's stripping keeps some invisible characters (\x1c-\x1f) that str.strip() removes.
        if not value.strip():
            raise ValueError("This field must not be empty.")
        return value


class _FieldError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_error(field: str, message: str) -> _FieldError:
    return _FieldError(field, message)


TEXT_FIELDS = ("name", "description", "target_market", "campaign_message", "products_description")


def parse_campaign(data: object, prohibited: list[str]) -> CampaignIn:
    """Validate a brief; raises Invalid naming every offending field at once."""
    if not isinstance(data, dict):
        raise Invalid({"body": "Send a JSON object."})
    # Prohibited words are looked for in what was sent, so they are reported with any other error.
    meta = data.get("image_metadata") if isinstance(data.get("image_metadata"), dict) else {}
    texts = {f: data.get(f) for f in TEXT_FIELDS} | {"image_metadata.ai_prompt": meta.get("ai_prompt")}
    fields = {}
    for field, text in texts.items():
        word = _prohibited_word(text, prohibited) if isinstance(text, str) else None
        if word:
            fields[field] = f"Contains the prohibited word '{word}'."
    try:
        brief = CampaignIn.model_validate(data)
    except ValidationError as e:
        raise Invalid(_fields_of(e) | fields) from None
    if fields:
        raise Invalid(fields)
    return brief


def _prohibited_word(text: str, words: list[str]) -> str | None:
    lowered = text.lower()
    for word in words:
        if re.search(rf"\b{re.escape(word)}\b", lowered):
            return word
    return None


def _fields_of(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors(include_url=False):
        loc = [str(p) for p in item["loc"] if p != "[key]"]  # a bad dict key: name the key itself
        ctx_error = (item.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldError):  # raised by a model validator: name the real field
            loc.append(ctx_error.field)
            message = str(ctx_error)
        else:
            message = _message(item)
        fields.setdefault(".".join(loc) or "body", message)
    return fields


def _message(item: dict) -> str:
    kind, ctx = item["type"], item.get("ctx") or {}
    if kind == "missing":
        return "This field is required."
    if kind == "string_too_short":
        return "This field must not be empty."
    if kind == "string_too_long":
        return f"At most {ctx.get('max_length')} characters."
    if kind == "value_error" and ctx.get("error") is not None:  # our own validators' sentences
        return str(ctx["error"])
    if kind == "literal_error":
        return f"Must be one of: {ctx.get('expected')}."
    return item["msg"]


class CropIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: int = Field(ge=0)
    y: int = Field(ge=0)
    w: int = Field(ge=1)
    h: int = Field(ge=1)


class CampaignPatch(BaseModel):
    """A new focal point (both coordinates, or both null to clear it) and/or crops per ratio
    (a box in source pixels, or null to go back to the automatic crop)."""
    model_config = ConfigDict(extra="forbid")

    focal_x: float | None = Field(default=None, ge=0, le=1)
    focal_y: float | None = Field(default=None, ge=0, le=1)
    crops: dict[Literal["1:1", "9:16", "16:9"], CropIn | None] | None = None

    @model_validator(mode="after")
    def _focal_pair(self) -> CampaignPatch:
        sent = self.model_fields_set
        if ("focal_x" in sent) != ("focal_y" in sent) or (self.focal_x is None) != (self.focal_y is None):
            raise _field_error("focal_x", "Give focal_x and focal_y together (or both null to clear).")
        if not sent:
            raise _field_error("body", "Send focal_x/focal_y and/or crops.")
        return self


def parse_patch(data: object) -> CampaignPatch:
    if not isinstance(data, dict):
        raise Invalid({"body": "Send a JSON object."})
    try:
        return CampaignPatch.model_validate(data)
    except ValidationError as e:
        raise Invalid(_fields_of(e)) from None
