"""Remote image sources end to end: Dropbox (the official SDK, in the real worker), Adobe Firefly and
the placeholder, driven over HTTP only against the local HTTPS fakes running as their own process.

What a marketer (or a script) sees is what is checked: the campaign's status, stage and message
while it runs and when it ends, the three formats it produces, and that no key reaches a log.
Fixtures: it_sources.py (two stacks of their own: MariaDB + Redis db 14, and the embedded runner).
One test is not over HTTP: test_two_campaigns_finishing_together_do_not_deadlock pins down, in
process and deterministically, a product bug that the HTTP tests here hit only by chance.
"""
from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import it_images
import pytest
from it_sources import (  # noqa: F401 - the fixture_* functions register fixtures for this module
    CONCURRENCY, FIREFLY_DEADLINE, FORMATS, MAX_ATTEMPTS, SECRETS, assert_readable, dropbox_campaign, firefly_campaign,
    fixture_fakes, fixture_fresh_fakes, fixture_placeholder_stack, fixture_remote_calls, fixture_remote_stack,
    fixture_source_stacks, leaks, log_texts, submit, watch, watch_all,
)
from PIL import Image

pytestmark = pytest.mark.timeout(300)

SLUGS = {"1:1": "1x1", "9:16": "9x16", "16:9": "16x9"}


def assert_three_formats(api, body: dict) -> None:
    """Three variants of the exact sizes, each a JPEG of that size and of the size the API states."""
    got = {v["ratio"]: (v["width"], v["height"]) for v in body["variants"]}
    assert got == FORMATS, body["variants"]
    for variant in body["variants"]:
        r = api.get(variant["url"])
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "image/jpeg"
        assert len(r.content) == variant["bytes"]
        image = Image.open(io.BytesIO(r.content))
        image.load()
        assert (image.format, image.size) == ("JPEG", FORMATS[variant["ratio"]]), variant
    assert body["processed_images"] == {f"ratio_{r.replace(':', '_')}": f"/api/campaigns/{body['id']}/variants/{s}"
                                        for r, s in SLUGS.items()}


def assert_completed_first_time(watched) -> None:
    body = watched.body
    assert body["status"] == "completed", (body["error_message"], watched.seen)
    # attempt 2 with nothing injected: see test_two_campaigns_finishing_together_do_not_deadlock.
    assert (body["attempt"], body["error_message"], body["stage"], body["progress"]) == (1, None, None, 100)
    assert not watched.waiting(), f"it waited although nothing failed: {watched.seen}"


def assert_failed_once(watched, fragment: str) -> str:
    """Failed at the first attempt (a permanent error is not retried), with a readable message."""
    body = watched.body
    assert body["status"] == "failed", watched.seen
    message = body["error_message"]
    assert fragment in (message or ""), message
    assert_readable(message)
    assert (body["attempt"], body["variants"], body["placeholder"]) == (1, [], False), body
    assert not watched.waiting(), f"a permanent error was retried: {watched.seen}"
    assert body["links"].get("retry") == f"/api/campaigns/{body['id']}/retry"
    return message


def assert_waited_then_completed(watched, reason: str, countdown: int) -> None:
    """pending + "waiting to retry" with the reason and the delay, then completed by the next attempt."""
    waiting = watched.waiting()
    assert waiting, f"never seen waiting to retry: {watched.seen}"
    assert all(s.attempt == 1 for s in waiting), watched.seen
    message = waiting[0].error_message or ""
    assert reason in message and message.endswith(f"Trying again in {countdown} s."), message
    assert_readable(message)
    body = watched.body
    assert body["status"] == "completed", (body["error_message"], watched.seen)
    assert (body["attempt"], body["error_message"], body["stage"]) == (2, None, None), body
    # The next attempt honoured the delay: not before it, and not long after it.
    waited = watched.seconds - waiting[0].at
    assert countdown - 0.5 <= waited <= countdown + 5, f"completed {waited:.1f} s after it began to wait"


# ============================================================================== Dropbox

def test_dropbox_links_of_both_forms_are_read_through_the_sdk(remote_stack, fakes):
    api = remote_stack.api("admin")
    scl = fakes.dropbox.add_link("beach day.jpg", it_images.small_photo(seed=1), kind="scl")
    short = fakes.dropbox.add_link("towels.jpg", it_images.small_photo(seed=2), kind="s")
    rlkey = parse_qs(urlsplit(scl).query)["rlkey"][0]
    assert "/scl/fi/" in scl and "/s/" in short and "rlkey" not in short

    done = watch_all(api, [dropbox_campaign(api, scl), dropbox_campaign(api, short)])
    for watched in done:
        assert_completed_first_time(watched)
        assert watched.body["placeholder"] is False
        assert watched.body["source"] == {"width": 1600, "height": 1200}
        assert_three_formats(api, watched.body)

    calls = fakes.dropbox.calls()
    assert calls.get("get_shared_link_file") == 2, calls  # the SDK's route, authorised by app key + secret,
    assert not calls.get("link") and not calls.get("content"), calls  # not the tokenless download
    worker = log_texts(remote_stack)["worker.log"]
    assert "Request to sharing/get_shared_link_file" in worker, "the Dropbox SDK did not run in the worker"
    assert rlkey not in worker, "the link key reached the worker's log"
    assert not leaks(worker), f"{leaks(worker)} in the worker's log"


@pytest.mark.parametrize(("behaviour", "message"), [
    ("not_found", "This Dropbox link does not exist or was removed."),
    ("access_denied", "This Dropbox link is private or password-protected; share it publicly (anyone with the link)."),
    ("directory", "This Dropbox link points to a folder; link a single image file."),
    ("unsupported_link_type", "This kind of Dropbox link is not supported; use Share > Copy link on a single file."),
], ids=["not-found", "access-denied", "folder", "unsupported-link-type"])
def test_a_dropbox_link_that_cannot_be_read_fails_with_the_reason(remote_stack, fakes, behaviour, message):
    api = remote_stack.api("admin")
    link = fakes.dropbox.add_link("beach.jpg", behaviour=behaviour)
    watched = watch(api, dropbox_campaign(api, link))
    assert assert_failed_once(watched, message) == message
    assert fakes.dropbox.calls("get_shared_link_file") == 1


@pytest.mark.parametrize("link", [
    "https://example.com/scl/fi/abc123/beach.jpg?rlkey=secretkey123&dl=0",
    "https://dropbox.com.example.net/s/abc123/beach.jpg?dl=0",
], ids=["other-site", "lookalike"])
def test_a_link_that_is_not_dropbox_is_refused_at_submit(remote_stack, fakes, link):
    api = remote_stack.api("admin")
    before = api.get("/api/campaigns").json()["total"]
    r = api.create({"description": "Not Dropbox", "target_market": "t", "campaign_message": "m",
                    "products_description": "p", "image_metadata": {"source_type": "dropbox", "source_path": link}})
    assert r.status_code == 422, r.text
    fields = r.json().get("fields") or {}
    assert "Only Dropbox links" in fields.get("image_metadata.source_path", ""), r.json()
    assert "secretkey123" not in r.text
    assert api.get("/api/campaigns").json()["total"] == before, "a refused campaign was stored"
    assert fakes.dropbox.calls() == {}, "a refused link was fetched"


RATE_LIMIT = "Dropbox is limiting requests right now; the image will be fetched later."


@pytest.mark.parametrize(("status", "kwargs", "reason", "countdown"), [
    (429, {"json_body": {"error_summary": "too_many_requests/..",
                         "error": {"reason": {".tag": "too_many_requests"}, "retry_after": 1}}}, RATE_LIMIT, 1),
    (429, {"body": "", "headers": {"Retry-After": "1"}}, RATE_LIMIT, 1),
    # The SDK's InternalServerError carries no headers, so a 503's Retry-After cannot be seen:
    # the pipeline's own first backoff (5 s) applies.
    (503, {"body": "Service Unavailable", "headers": {"Retry-After": "1"}},
     "Dropbox is not available right now (HTTP 503).", 5),
], ids=["429-json-body", "429-header-only", "503"])
def test_a_busy_dropbox_puts_the_campaign_back_to_wait_then_it_completes(
        remote_stack, fakes, status, kwargs, reason, countdown):
    api = remote_stack.api("admin")
    link = fakes.dropbox.add_link("beach.jpg", it_images.small_photo(seed=3))
    fakes.dropbox.fail_next("get_shared_link_file", status, times=1, **kwargs)
    watched = watch(api, dropbox_campaign(api, link))
    assert_waited_then_completed(watched, reason, countdown)
    assert_three_formats(api, watched.body)
    assert fakes.dropbox.calls("get_shared_link_file") == 2


# ============================================================================== Firefly

def test_firefly_generates_the_source_and_one_token_serves_many_campaigns(remote_stack, fakes):
    api = remote_stack.api("admin")
    campaigns = 4
    done = watch_all(api, [firefly_campaign(api, f"A sunlit beach, towel number {n}") for n in range(campaigns)])
    for watched in done:
        assert_completed_first_time(watched)
        assert watched.body["placeholder"] is False
        # The fake's output (1/16 of the 2048x2048 asked for), not a 2048x2048 placeholder.
        assert watched.body["source"] == {"width": 128, "height": 128}
    assert_three_formats(api, done[0].body)
    calls = fakes.firefly.calls()
    assert (calls.get("generate"), calls.get("image")) == (campaigns, campaigns), calls
    # Each worker process caches its IMS token: at most one sign-in per pool process, not one per campaign.
    assert 1 <= calls.get("ims", 0) <= CONCURRENCY, calls
    assert not calls.get("generate_sync") and not calls.get("cancel"), calls


def test_firefly_refusing_the_prompt_fails_the_campaign(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.fail_next("generate", 451, json_body={"error_code": "prompt_unsafe",
                                                        "message": "The prompt was flagged by content moderation"})
    watched = watch(api, firefly_campaign(api))
    assert assert_failed_once(watched, "refused this prompt") == (
        "Adobe Firefly refused this prompt: the prompt was flagged as unsafe. Rephrase it and retry.")
    assert fakes.firefly.calls("generate") == 1 and not fakes.firefly.calls("image")


def test_a_firefly_job_failing_as_unsafe_fails_the_campaign(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.configure(job_outcome="failed:output_media_unsafe")
    watched = watch(api, firefly_campaign(api))
    assert assert_failed_once(watched, "refused this prompt") == (
        "Adobe Firefly refused this prompt: the generated image was flagged as unsafe. Rephrase it and retry.")
    assert fakes.firefly.calls("status") >= 1 and not fakes.firefly.calls("image")


def test_a_firefly_rate_limit_waits_for_retry_after_then_completes(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.fail_next("generate", 429, json_body={"error_code": "rate_limited", "message": "Too many requests"},
                            headers={"retry-after": "1", "x-access-rate-limit-level": "org"})
    watched = watch(api, firefly_campaign(api))
    assert_waited_then_completed(
        watched, "Adobe Firefly is rate-limiting this server; the image will be generated later.", 1)
    assert watched.body["placeholder"] is False
    assert fakes.firefly.calls("generate") == 2


def test_a_firefly_token_rejected_partway_is_renewed_once(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.fail_next("status", 401, json_body={"error_code": "401013", "message": "Oauth token is not valid"})
    watched = watch(api, firefly_campaign(api))
    assert_completed_first_time(watched)  # renewed inside the attempt: no Celery retry
    calls = fakes.firefly.calls()
    assert calls.get("generate") == 1 and calls.get("status", 0) >= 2, calls
    # One renewal; plus one first sign-in if this pool process had not signed in yet.
    assert calls.get("ims") in (1, 2), calls


def test_an_exhausted_firefly_quota_fails_with_the_account_sentence(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.fail_next("generate", 403, json_body={"error_code": "access_error", "message": "Quota exhausted"},
                            headers={"x-access-error": "quota_exhausted"})
    watched = watch(api, firefly_campaign(api))
    message = assert_failed_once(watched, "ask an administrator")
    assert message == ("The server's Adobe Firefly account cannot generate images now "
                       "(its generation quota is used up); ask an administrator.")
    for secret in SECRETS.values():
        assert secret not in str(watched.body)
    assert fakes.firefly.calls("generate") == 1


def test_a_firefly_job_that_never_finishes_fails_at_the_deadline(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.configure(job_outcome="never")
    watched = watch(api, firefly_campaign(api), timeout=FIREFLY_DEADLINE + 15)
    assert assert_failed_once(watched, "did not finish") == (
        f"Adobe Firefly did not finish within {FIREFLY_DEADLINE} s. Try again later.")
    assert FIREFLY_DEADLINE - 1.5 <= watched.seconds <= FIREFLY_DEADLINE + 6, watched.seconds
    calls = fakes.firefly.calls()
    assert calls.get("cancel") == 1, f"the abandoned job was not cancelled: {calls}"
    assert calls.get("status", 0) >= 2 and not calls.get("image"), calls


def test_retries_are_bounded_by_max_attempts(remote_stack, fakes):
    api = remote_stack.api("admin")
    fakes.firefly.fail_next("generate", 503, json_body={"error_code": "model_not_loaded", "message": "Try later"},
                            headers={"retry-after": "1"}, times=10)
    watched = watch(api, firefly_campaign(api))
    body = watched.body
    assert body["status"] == "failed", watched.seen
    assert body["attempt"] == MAX_ATTEMPTS
    assert body["error_message"] == ("Adobe Firefly is not available right now (HTTP 503). "
                                     f"We tried {MAX_ATTEMPTS} times; use Retry to try again later."), body
    assert_readable(body["error_message"])
    assert [s.attempt for s in watched.waiting()] == list(range(1, MAX_ATTEMPTS)), watched.seen
    assert fakes.firefly.calls("generate") == MAX_ATTEMPTS
    assert body["placeholder"] is False and body["variants"] == []
    # "use Retry to try again later": once Firefly is back, Retry makes it.
    assert body["links"].get("retry") == f"/api/campaigns/{body['id']}/retry"
    fakes.firefly.reset()
    r = api.post(body["links"]["retry"])
    assert r.status_code == 202, r.text
    again = watch(api, body["id"])
    assert again.body["status"] == "completed", again.seen
    assert (again.body["attempt"], again.body["error_message"]) == (1, None)
    assert fakes.firefly.calls("generate") == 1


# ============================================================================== the placeholder

def test_without_firefly_ai_generated_completes_with_a_labelled_placeholder(placeholder_stack):
    api = placeholder_stack.api("admin")
    watched = watch(api, submit(api, {"source_type": "ai_generated", "ai_prompt": "A sunlit beach at dawn"}),
                    timeout=60)
    assert_completed_first_time(watched)
    assert watched.body["placeholder"] is True
    assert watched.body["source"] == {"width": 2048, "height": 2048}
    assert_three_formats(api, watched.body)


# ============================================================================== a product bug

def test_two_campaigns_finishing_together_do_not_deadlock(remote_stack, tmp_path):
    """PRODUCT BUG, worker/pipeline.py _finish(): two campaigns that finish at the same moment can
    deadlock in MariaDB/MySQL (seen end to end in this module: the worker's log shows
    `retry: Retry in 1s: OperationalError(... 1213, 'Deadlock found when trying to get lock ...')`
    and the campaign runs again as attempt 2, a second Firefly generation included).

    _finish() runs `DELETE FROM variants WHERE campaign_id = ? AND ratio IN (...)` before inserting
    the new rows. For a campaign with no variants yet, that DELETE matches nothing and, under
    InnoDB's REPEATABLE READ, takes a gap lock on uq_variants_campaign_ratio. Two campaigns whose
    ids fall in the same gap both hold that gap lock, and then each INSERT waits for the other's:
    a deadlock, one transaction rolled back, Celery's autoretry re-runs the whole campaign.

    In-process on purpose, to be deterministic: the product's own pipeline.process() on the
    stack's MariaDB database, two campaigns whose ids sort after every other (same gap), and
    both INSERTs held back until both DELETEs have run (what happened by chance above).
    """
    import contextlib
    import threading

    import sqlalchemy as sa

    from portal import create_app
    from portal.models import Campaign, User, db, utcnow
    from worker import pipeline

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": remote_stack.database_url, "CELERY_BROKER_URL": "memory://",
        "SECRET_KEY": "test", "INSTANCE_DIR": str(tmp_path), "STORAGE_DIR": str(remote_stack.storage_dir),
        "IMPORT_DIR": str(remote_stack.import_dir), "FIREFLY_CLIENT_ID": "", "FIREFLY_CLIENT_SECRET": "",
        "MAX_ATTEMPTS": MAX_ATTEMPTS,
    })
    ids = ["f" * 28 + f"{n:04d}" for n in (1, 2)]  # after every uuid4().hex: one gap for both
    with app.app_context():
        owner = db.session.execute(sa.select(User).filter_by(username="admin")).scalar_one()
        db.session.add_all([Campaign(
            id=campaign_id, owner_id=owner.id, name="Finishing together", description="d", target_market="t",
            campaign_message="m", products_description="p", source_type="ai_generated", generate_by_ai=True,
            ai_prompt="A beach at dawn", enqueued_at=utcnow()) for campaign_id in ids])
        db.session.commit()
        engine = db.engine

    both_deleted = threading.Barrier(2)

    def hold_the_insert(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO VARIANTS"):
            with contextlib.suppress(threading.BrokenBarrierError):  # a fix that serialises: go on
                both_deleted.wait(timeout=5)

    errors: dict[str, BaseException] = {}

    def finish(campaign_id: str) -> None:
        try:
            with app.app_context():
                pipeline.process(campaign_id, f"task-{campaign_id[-4:]}")
        except BaseException as e:  # reported below
            errors[campaign_id] = e

    api = remote_stack.api("admin")
    sa.event.listen(engine, "before_cursor_execute", hold_the_insert)
    try:
        threads = [threading.Thread(target=finish, args=(campaign_id,)) for campaign_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        states = {campaign_id: (api.campaign(campaign_id)["status"], api.campaign(campaign_id)["attempt"])
                  for campaign_id in ids}
        assert not errors, (
            "two campaigns finishing at once deadlocked in worker/pipeline.py _finish() (the DELETE of "
            "not-yet-existing variants takes an InnoDB gap lock, then both INSERTs wait on each other): "
            f"{ {k[-4:]: f'{type(e).__name__}: {str(e)[:160]}' for k, e in errors.items()} }; states {states}")
        assert set(states.values()) == {("completed", 1)}, states
    finally:
        sa.event.remove(engine, "before_cursor_execute", hold_the_insert)
        for campaign_id in ids:
            api.delete(f"/api/campaigns/{campaign_id}")
        engine.dispose()


# ============================================================================== at the end

def test_no_campaign_is_left_pending_or_processing(remote_stack, placeholder_stack):
    for stack in (remote_stack, placeholder_stack):
        api = stack.api("admin")  # an admin sees every campaign
        stuck, page, pages = {}, 1, 1
        while page <= pages:
            r = api.get("/api/campaigns", params={"per_page": 100, "page": page})
            assert r.status_code == 200, r.text
            pages = r.json()["pages"]
            stuck |= {c["id"]: (c["status"], c["stage"]) for c in r.json()["items"]
                      if c["status"] not in ("completed", "failed")}
            page += 1
        assert not stuck, f"{stack.name}: left running: {stuck}"
        for status in ("pending", "processing"):
            assert api.get("/api/campaigns", params={"status": status}).json()["total"] == 0, (stack.name, status)


def test_the_ims_token_is_fetched_once_per_worker_process_over_the_module(remote_calls):
    """Every Firefly campaign above shared the pool processes' cached tokens; only the injected 401
    made one process sign in again."""
    if remote_calls.get("firefly.generate", 0) < 10:
        pytest.skip("counts the sign-ins of the Firefly tests above; run the whole module")
    assert 1 <= remote_calls.get("firefly.ims", 0) <= CONCURRENCY + 1, remote_calls


def test_no_secret_reaches_any_log(remote_stack, placeholder_stack):
    texts = {f"{stack.name}/{name}": text for stack in (remote_stack, placeholder_stack)
             for name, text in log_texts(stack).items()}
    assert {"remote-sources/web.log", "remote-sources/worker.log", "remote-sources/beat.log"} <= set(texts)
    found = {name: leaks(text) for name, text in texts.items() if leaks(text)}
    assert not found, f"secrets in logs: {found}"
