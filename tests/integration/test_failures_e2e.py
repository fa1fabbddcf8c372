"""Campaigns that cannot be made end `failed` with a reason a person can read; retry rules."""
from __future__ import annotations

import re

import it_images
import pytest
from it_stack import BRIEF, Stack

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


@pytest.mark.parametrize("metadata", [
    {"source_type": "dropbox", "source_path": "https://www.dropbox.com/s/abc123/beach.jpg?dl=0"},
    {"source_type": "ai_generated", "ai_prompt": "A beach at dawn"},
], ids=["dropbox", "ai_generated"])
def test_unavailable_sources_fail_with_a_clear_message(stack: Stack, metadata: dict):
    api = stack.api("alice")
    body = {**BRIEF, "image_metadata": metadata, "generate_by_ai": metadata["source_type"] == "ai_generated"}
    r = api.create(body)
    assert r.status_code == 202, r.text
    final = api.wait(r.json()["id"]).body
    assert final["status"] == "failed", final
    assert "not available on this server" in final["error_message"]
    assert_readable(final["error_message"])
    assert final["image_metadata"]["source_type"] == metadata["source_type"]
    assert final["generate_by_ai"] is body["generate_by_ai"]
