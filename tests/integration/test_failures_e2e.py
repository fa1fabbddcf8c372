"""Campaigns that cannot be made end `failed` with a reason a person can read; retry rules."""
from __future__ import annotations

import re

import it_images
import pytest
from it_stack import BRIEF, UNREACHABLE_DROPBOX, Stack

pytestmark = pytest.mark.timeout(180)

# What a traceback or an exception repr would leave in a message.
TECHNICAL = re.compile(r"Traceback|File \"|line \d+|Error\(|Exception|<[a-z_.]+ object|PIL\.|\.py\b")


def assert_readable(message: str | None) -> None:
    assert message, "a failed campaign must say why"
    assert not TECHNICAL.search(message), f"technical text shown to the user: {message!r}"
    assert "\n" not in message.strip() and len(message) < 300, message


def test_undecodable_image_fails_readably_and_a_retry_fails_again(stack: Stack):
    api = stack.api("alice")
    r = api.upload(it_images.truncated_jpeg(), filename="cut-off.jpg")
    assert r.status_code == 202, r.text  # a JPEG header: accepted, found broken by the worker
    campaign_id = r.json()["id"]
    first = api.wait(campaign_id).body
    assert first["status"] == "failed", first
    assert_readable(first["error_message"])
    assert "damaged" in first["error_message"] or "incomplete" in first["error_message"]
    assert first["variants"] == [] and first["links"]["retry"] == f"/api/campaigns/{campaign_id}/retry"
    assert "zip" not in first["links"]
    blocked = api.get(f"/api/campaigns/{campaign_id}/variants/1x1")
    assert blocked.status_code == 409 and blocked.json()["error"] == "conflict"

    retried = api.post(f"/api/campaigns/{campaign_id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == campaign_id and retried.json()["status"] == "pending"
    second = api.wait(campaign_id).body
    assert second["status"] == "failed", second
    assert second["error_message"] == first["error_message"], "the retry failed for another reason"
    assert second["finished_at"] != first["finished_at"], "the retry did not run again"


def test_retry_of_a_completed_campaign_is_409(stack: Stack):
    api = stack.api("alice")
    done = api.submit_and_wait(it_images.small_photo(seed=7)).body
    assert done["status"] == "completed", done
    assert "retry" not in done["links"]
    r = api.post(f"/api/campaigns/{done['id']}/retry")
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "conflict" and "completed" in r.json()["message"]
    assert api.campaign(done["id"])["status"] == "completed"


def test_an_unreachable_dropbox_link_fails_with_a_clear_message(stack: Stack):
    api = stack.api("alice")
    r = api.create({**BRIEF, "image_metadata": {"source_type": "dropbox", "source_path": UNREACHABLE_DROPBOX}})
    assert r.status_code == 202, r.text
    final = api.wait(r.json()["id"]).body
    assert final["status"] == "failed", final
    assert final["error_message"] == "The host dropbox.invalid does not exist."


def test_without_firefly_a_generated_source_is_a_marked_placeholder(stack: Stack):
    api = stack.api("alice")
    body = {**BRIEF, "image_metadata": {"source_type": "ai_generated", "ai_prompt": "A beach at dawn"},
            "generate_by_ai": True}
    r = api.create(body)
    assert r.status_code == 202, r.text
    final = api.wait(r.json()["id"]).body
    assert (final["status"], final["placeholder"]) == ("completed", True), final
    assert len(final["variants"]) == 3
