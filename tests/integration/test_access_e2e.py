"""Who may see what, sign-in, and deleting a campaign."""
from __future__ import annotations

import uuid

import it_images
import pytest
from it_stack import Stack

pytestmark = pytest.mark.timeout(180)


def not_found_paths(campaign_id: str) -> list[tuple[str, str]]:
    base = f"/api/campaigns/{campaign_id}"
    return [("GET", base), ("DELETE", base), ("POST", f"{base}/retry"),
            ("GET", f"{base}/variants/1x1"), ("GET", f"{base}/variants/16x9/preview"),
            ("GET", f"{base}/variants.zip"), ("GET", f"{base}/source")]


def test_another_users_campaign_is_404_everywhere_and_not_listed(stack: Stack):
    alice, bob, admin = stack.api("alice"), stack.api("bob"), stack.api("admin")
    done = alice.submit_and_wait(it_images.small_photo(seed=3), name="Alice's secret launch").body
    assert done["status"] == "completed", done
    campaign_id = done["id"]
    unknown = uuid.uuid4().hex
    for method, path in not_found_paths(campaign_id):
        r = bob.request(method, path)
        assert r.status_code == 404, f"{method} {path} as bob: {r.status_code} {r.text}"
        assert r.headers["Content-Type"].startswith("application/json")
        # Indistinguishable from an id that does not exist: ids stay secret.
        same = bob.request(method, path.replace(campaign_id, unknown))
        assert (same.status_code, same.json()) == (r.status_code, r.json()), path
    assert campaign_id not in bob.all_campaign_ids()
    listed = bob.get("/api/campaigns", params={"q": "secret launch"}).json()
    assert listed["items"] == [] and listed["total"] == 0
    assert campaign_id in admin.all_campaign_ids()
    assert admin.campaign(campaign_id)["name"] == "Alice's secret launch"
    # bob's DELETE and retry did nothing.
    still = alice.campaign(campaign_id)
    assert still["status"] == "completed" and still["finished_at"] == done["finished_at"]
    assert alice.get(f"/api/campaigns/{campaign_id}/variants/1x1").status_code == 200
    assert campaign_id in alice.all_campaign_ids()


def test_without_credentials_the_api_answers_401_json(stack: Stack):
    anonymous = stack.api(None)
    for method, path in [("GET", "/api/campaigns"), ("POST", "/api/campaigns"), ("GET", "/api/me")]:
        r = anonymous.request(method, path)
        assert r.status_code == 401, f"{method} {path}: {r.status_code}"
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["error"] == "unauthorized" and r.json()["message"]
        assert r.headers["WWW-Authenticate"].startswith("Basic")
    wrong = anonymous.get("/api/campaigns", auth=("alice", "wrong password"))
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    assert anonymous.get("/healthz").status_code == 200  # probes stay public


def test_delete_removes_the_row_and_its_files(stack: Stack):
    api = stack.api("alice")
    done = api.submit_and_wait(it_images.small_photo(seed=5)).body
    assert done["status"] == "completed", done
    campaign_id = done["id"]
    folder = stack.campaign_dir(campaign_id)
    assert folder.is_dir() and (folder / "1x1.jpg").is_file() and (folder / "source").is_file()
    r = api.delete(f"/api/campaigns/{campaign_id}")
    assert r.status_code == 204, r.text
    assert r.content == b""
    gone = api.get(f"/api/campaigns/{campaign_id}")
    assert gone.status_code == 404 and gone.json()["error"] == "not_found"
    assert api.get(f"/api/campaigns/{campaign_id}/variants/1x1").status_code == 404
    assert api.delete(f"/api/campaigns/{campaign_id}").status_code == 404
    assert campaign_id not in api.all_campaign_ids()
    assert campaign_id not in stack.api("admin").all_campaign_ids()
    assert not folder.exists(), f"{folder} is still on disk"

