"""Dropbox and Firefly campaigns through the pipeline, against the local HTTPS fakes.

No SDK here (no credentials): the Dropbox part uses the tokenless link download, so this
module never imports `dropbox` (test_remote_dropbox.py points the SDK at its fake).
"""
from __future__ import annotations

import pytest

from portal.models import Campaign, User, db
from tests.fakes.dropbox_fake import DropboxFake
from tests.fakes.firefly_fake import CLIENT_ID, CLIENT_SECRET, FireflyFake
from tests.fakes.tls import make_tls
from worker import pipeline
from worker.remote import firefly


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def dropbox_fake(tls):
    fake = DropboxFake().start(tls)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def firefly_fake(tls):
    fake = FireflyFake().start(tls)
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(app, tls, dropbox_fake, firefly_fake):
    dropbox_fake.reset()
    firefly_fake.reset()
    firefly_fake.configure(job_outcome="succeeded", polls_to_finish=1, unsafe_words=[])
    firefly.clear_token_cache()
    app.config.update(FETCH_ALLOW_PRIVATE=True, REMOTE_TIMEOUT=3, FIREFLY_DEADLINE=10,
                      DROPBOX_LINK_HOSTS=[dropbox_fake.host], DROPBOX_CONTENT_HOSTS=[dropbox_fake.host],
                      DROPBOX_CA_BUNDLE=tls.ca, FIREFLY_CA_BUNDLE=tls.ca)
    yield
    firefly.clear_token_cache()


@pytest.fixture
def with_firefly(app, firefly_fake):
    app.config.update(FIREFLY_CLIENT_ID=CLIENT_ID, FIREFLY_CLIENT_SECRET=CLIENT_SECRET,
                      FIREFLY_IMS_URL=f"{firefly_fake.base_url}/ims/token/v3", FIREFLY_API_BASE=firefly_fake.base_url,
                      FIREFLY_IMAGE_HOSTS=[firefly_fake.host])


def campaign(source_type: str, **fields) -> Campaign:
    owner = db.session.execute(db.select(User).filter_by(username="alice")).scalar_one()
    row = Campaign(owner_id=owner.id, name="c", description="d", target_market="t", campaign_message="m",
                   products_description="p", source_type=source_type, **fields)
    db.session.add(row)
    db.session.commit()
    return row


def run(row: Campaign, task_id: str = "task-1") -> Campaign:
    pipeline.process(row.id, task_id)
    db.session.refresh(row)
    return row


def test_a_dropbox_link_is_downloaded_and_rendered(dropbox_fake):
    row = run(campaign("dropbox", source_path=dropbox_fake.add_link("beach.jpg")))
    assert row.status == "completed" and len(row.variants) == 3 and not row.placeholder


def test_a_missing_dropbox_link_fails_with_a_reason(dropbox_fake):
    link = dropbox_fake.add_link("gone.jpg", behaviour="not_found")
    row = run(campaign("dropbox", source_path=link))
    assert row.status == "failed" and "does not exist" in row.error_message
    assert "rlkey" not in row.error_message


def test_without_firefly_a_labelled_placeholder_is_used():
    row = run(campaign("ai_generated", ai_prompt="a beach at dawn"))
    assert (row.status, row.placeholder) == ("completed", True)


def test_firefly_generates_the_source(with_firefly, firefly_fake):
    row = run(campaign("ai_generated", ai_prompt="a beach at dawn"))
    assert (row.status, row.placeholder) == ("completed", False)


def test_a_refused_prompt_fails_and_never_becomes_a_placeholder(with_firefly, firefly_fake):
    firefly_fake.fail_next("generate", 451, json_body={"error_code": "prompt_unsafe", "message": "blocked"})
    row = run(campaign("ai_generated", ai_prompt="something"))
    assert row.status == "failed" and "refused this prompt" in row.error_message
    assert not row.placeholder


def test_an_outage_waits_and_the_redelivery_completes(with_firefly, firefly_fake):
    firefly_fake.fail_next("generate", 503, json_body={"error_code": "model_not_loaded", "message": "later"})
    row = campaign("ai_generated", ai_prompt="a beach")
    with pytest.raises(pipeline.RetryLater) as later:
        pipeline.process(row.id, "task-1")
    assert 0 < later.value.countdown <= 300
    db.session.refresh(row)
    assert (row.status, row.stage, row.attempt) == ("pending", "waiting to retry", 1)
    assert "Trying again" in row.error_message
    row = run(row, "task-1")  # Celery re-sends the same task id
    assert (row.status, row.attempt, row.error_message) == ("completed", 2, None)


def test_a_rate_limit_honours_retry_after(with_firefly, firefly_fake):
    firefly_fake.fail_next("generate", 429, json_body={"error_code": "rate_limited"}, headers={"retry-after": "42"})
    with pytest.raises(pipeline.RetryLater) as later:
        pipeline.process(campaign("ai_generated", ai_prompt="x").id, "task-1")
    assert later.value.countdown == 42


def test_the_last_attempt_fails_instead_of_waiting(app, with_firefly, firefly_fake):
    firefly_fake.fail_next("generate", 503, json_body={"error_code": "model_not_loaded"})
    row = campaign("ai_generated", ai_prompt="x", attempt=app.config["MAX_ATTEMPTS"] - 1)
    row = run(row)
    assert row.status == "failed" and "We tried 3 times" in row.error_message
