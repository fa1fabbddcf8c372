"""worker.remote.firefly against the local Firefly fake (IMS + API + pre-signed S3 on one port)."""
from __future__ import annotations

import dataclasses
import threading
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest

from tests.fakes.firefly_fake import CLIENT_ID, CLIENT_SECRET, FireflyFake
from tests.fakes.tls import make_tls
from worker.imaging import sniff_format
from worker.remote import SourceError, TransientSourceError, firefly
from worker.remote.firefly import FireflySettings, best_size, generate


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("firefly-tls"))
    fake = FireflyFake().start(tls)
    fake.tls = tls
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def _fresh(fake):
    fake.reset()
    fake.configure(job_outcome="succeeded", polls_to_finish=2, token_ttl=86399, unsafe_words=[])
    fake.clock_skew = 0.0
    firefly.clear_token_cache()
    yield
    firefly.clear_token_cache()


@pytest.fixture
def settings(fake) -> FireflySettings:
    return FireflySettings(CLIENT_ID, CLIENT_SECRET, ims_url=f"{fake.base_url}/ims/token/v3", api_base=fake.base_url,
                           ca_bundle=fake.tls.ca, timeout=2, poll_interval=0.02, deadline=5, allow_private=True,
                           allowed_image_hosts=frozenset({fake.host}))


def tokens(fake) -> list[str]:
    return list(fake.tokens)


def fails(fake, exc_type, settings, prompt="a bowl of lemons", **kwargs) -> pytest.ExceptionInfo:
    """The raised exception; its message names no client secret, token or signature."""
    with pytest.raises(exc_type) as info:
        generate(prompt, settings, **kwargs)
    message = str(info.value)
    for secret in (CLIENT_SECRET, "Bearer", "X-Amz-Signature", *tokens(fake)):
        assert secret not in message, f"{secret!r} leaked into {message!r}"
    return info


# -- success ------------------------------------------------------------------------------

def test_generate_returns_the_jpeg_and_reuses_the_token(fake, settings):
    first = generate("a bowl of lemons", settings)
    second = generate("a bowl of limes", settings)
    assert sniff_format(first) == sniff_format(second) == "JPEG"
    assert fake.calls("ims") == 1 and fake.calls("generate") == 2 and fake.calls("image") == 2
    (submit, _) = fake.requests_to("generate")
    assert submit["json"] == {"prompt": "a bowl of lemons", "numVariations": 1,
                              "size": {"width": 2048, "height": 2048}, "contentClass": "photo"}
    assert submit["headers"]["X-Api-Key"] == CLIENT_ID and submit["headers"]["X-Model-Version"] == "image3"


def test_status_url_is_followed_as_given_and_the_image_fetched_without_adobe_headers(fake, settings):
    generate("a bowl of lemons", settings)
    polls = fake.requests_to("status")
    assert len(polls) == 3  # pending, running, succeeded
    assert polls[0]["path"].startswith("/v3/status/urn:ff:jobs:")
    (download,) = fake.requests_to("image")
    assert not {"Authorization", "X-Api-Key"} & set(download["headers"])
    assert "X-Amz-Signature=" in download["query"]


def test_options_override_the_content_class(fake, settings):
    generate("a poster", settings, options={"contentClass": "art", "seeds": [42]})
    assert fake.requests_to("generate")[0]["json"]["contentClass"] == "art"
    with pytest.raises(ValueError, match="unknown Firefly options"):
        generate("a poster", settings, options={"numVariations": 4})


def test_optional_fields_left_out_of_the_result_are_fine(fake, settings):
    fake.job_outcome = "succeeded:minimal"
    assert sniff_format(generate("a bowl of lemons", settings)) == "JPEG"


def test_concurrent_tasks_share_one_token(fake, settings):
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(generate("lemons", settings))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and fake.calls("ims") == 1


def test_a_token_is_replaced_five_minutes_before_it_expires(fake, settings, monkeypatch):
    generate("a", settings)
    now = time.monotonic()
    monkeypatch.setattr(firefly, "_clock", lambda: now + 86399 - 301)
    generate("b", settings)
    assert fake.calls("ims") == 1
    monkeypatch.setattr(firefly, "_clock", lambda: now + 86399 - 299)
    generate("c", settings)
    assert fake.calls("ims") == 2


def test_a_short_lived_token_is_used_for_half_its_life(fake, settings):
    fake.token_ttl = 200  # shorter than the 5-minute margin: still reused, not fetched per call
    generate("a", settings)
    generate("b", settings)
    assert fake.calls("ims") == 1


def test_a_401_gets_one_new_token_and_a_retry(fake, settings):
    fake.fail_next("generate", 401, json_body={"error_code": "401013", "message": "Oauth token is not valid"})
    assert sniff_format(generate("a", settings)) == "JPEG"
    assert fake.calls("ims") == 2 and fake.calls("generate") == 2


def test_a_token_revoked_midway_is_renewed_while_polling(fake, settings):
    generate("warm the cache", settings)
    fake.reset()
    fake.polls_to_finish = 3
    fake.fail_next("status", 401, json_body={"error_code": "401013", "message": "Oauth token is not valid"})
    fake.expire_tokens()  # the cached token is now dead for generate too
    assert sniff_format(generate("a", settings)) == "JPEG"
    assert fake.calls("ims") == 2


def test_best_size_covers_every_ratio_at_full_resolution():
    assert best_size(firefly.SIZES["image3"]) == best_size(firefly.SIZES["image4"]) == (2048, 2048)
    # 9:16 from 2048x2048 is 1152x2048 >= 1080x1920; 16:9 is 2048x1152 >= 1920x1080
    assert 2048 * 9 // 16 >= 1080 and 2048 >= 1920


def test_image4_models_get_a_size_from_their_own_list(fake, settings):
    generate("a", dataclasses.replace(settings, model_version="image4_standard"))
    assert fake.requests_to("generate")[0]["json"]["size"] == {"width": 2048, "height": 2048}


# -- failures -----------------------------------------------------------------------------

@pytest.mark.parametrize("retry_after", ["2", "http-date"])
def test_rate_limit_is_retried_later_with_its_delay(fake, settings, retry_after):
    value = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True) \
        if retry_after == "http-date" else retry_after
    fake.fail_next("generate", 429, json_body={"error_code": "rate_limited", "message": "Too many requests"},
                   headers={"retry-after": value, "x-access-rate-limit-level": "org"})
    info = fails(fake, TransientSourceError, settings)
    expected = 2 if retry_after == "2" else 30
    assert info.value.retry_after == pytest.approx(expected, abs=2)


@pytest.mark.parametrize(("status", "code"), [(408, "timeout_error"), (500, "runtime_error"),
                                              (503, "model_not_loaded")])
def test_timeouts_and_outages_are_retried_later(fake, settings, status, code):
    fake.fail_next("generate", status, json_body={"error_code": code, "message": "try later"})
    info = fails(fake, TransientSourceError, settings)
    assert str(info.value) == f"Adobe Firefly is not available right now (HTTP {status})."


@pytest.mark.parametrize(("status", "code", "reason"), [
    (451, "prompt_unsafe", "the prompt was flagged as unsafe"),
    (451, "prompt_entity_denied", "the prompt names a person, brand or work it may not depict"),
    (422, "prompt_unsafe", "the prompt was flagged as unsafe"),  # the legacy sync API's spelling
    (422, "output_media_unsafe", "the generated image was flagged as unsafe"),
])
def test_content_refusals_tell_the_user_to_rephrase(fake, settings, status, code, reason):
    fake.fail_next("generate", status, json_body={"error_code": code, "message": "blocked"})
    info = fails(fake, SourceError, settings)
    assert str(info.value) == f"Adobe Firefly refused this prompt: {reason}. Rephrase it and retry."


def test_an_unsafe_prompt_is_refused_by_the_fake_itself(fake, settings):
    fake.unsafe_words = ["gore"]
    assert "Rephrase it and retry" in str(fails(fake, SourceError, settings, prompt="lots of GORE").value)


@pytest.mark.parametrize("outcome", ["failed:prompt_unsafe", "failed:image_unsafe", "failed:input_media_unsafe"])
def test_jobs_failing_on_content_are_refusals(fake, settings, outcome):
    fake.job_outcome = outcome
    assert "Adobe Firefly refused this prompt:" in str(fails(fake, SourceError, settings).value)


@pytest.mark.parametrize(("outcome", "message"), [
    ("failed:runtime_error", "Adobe Firefly could not generate the image (The job failed: runtime_error)."),
    ("timeout", "Adobe Firefly timed out while generating the image. Try again later."),
    ("cancelled", "The Adobe Firefly job was cancelled before it finished."),
    ("canceled", "The Adobe Firefly job was cancelled before it finished."),
])
def test_other_job_endings_fail_with_a_clear_message(fake, settings, outcome, message):
    fake.job_outcome = outcome
    assert str(fails(fake, SourceError, settings).value) == message


@pytest.mark.parametrize("cancel_answer", [None, 409])
def test_a_job_that_never_finishes_hits_the_deadline_and_is_cancelled(fake, settings, cancel_answer):
    fake.job_outcome = "never"
    if cancel_answer:
        fake.fail_next("cancel", 409, json_body={"error_code": "job_completed", "message": "done"})
    info = fails(fake, SourceError, dataclasses.replace(settings, deadline=0.3))
    assert str(info.value) == "Adobe Firefly did not finish within 0.3 s. Try again later."
    assert fake.calls("cancel") == 1


@pytest.mark.parametrize(("headers", "code", "reason"), [
    ({"x-access-error": "quota_exhausted"}, "access_error", "its generation quota is used up"),
    ({"x-access-error": "user_non_entitled"}, "access_error", "it is not entitled to Firefly"),
    ({}, "403003", "its API key was rejected"),
])
def test_account_problems_fail_without_secrets(fake, settings, headers, code, reason):
    fake.fail_next("generate", 403, json_body={"error_code": code, "message": "no"}, headers=headers)
    info = fails(fake, SourceError, settings)
    assert str(info.value) == f"The server's Adobe Firefly account cannot generate images now ({reason}); " \
                              "ask an administrator."


def test_a_wrong_api_key_is_caught_by_the_fake(fake, settings):
    fake.clients["other-client"] = "other-secret"
    fake.tokens.clear()
    mixed = dataclasses.replace(settings, client_id="other-client", client_secret="other-secret")
    fake.fail_next("generate", 403, json_body={"error_code": "403003", "message": "Api Key is invalid"})
    assert "its API key was rejected" in str(fails(fake, SourceError, mixed).value)


def test_a_second_401_is_a_misconfiguration(fake, settings):
    body = {"error_code": "401013", "message": "Oauth token is not valid"}
    fake.fail_next("generate", 401, json_body=body, times=2)
    info = fails(fake, SourceError, settings)
    assert "cannot generate images now (its access token was rejected)" in str(info.value)
    assert fake.calls("ims") == 2


@pytest.mark.parametrize(("change", "error"), [
    ({"client_secret": "not-the-secret"}, "invalid_client"),
    ({"client_id": "unknown-client"}, "invalid_client"),
    ({"scope": "openid,AdobeID"}, "invalid_scope"),
])
def test_ims_refusals_are_misconfigurations(fake, settings, change, error):
    info = fails(fake, SourceError, dataclasses.replace(settings, **change))
    assert str(info.value) == ("The server's Adobe Firefly account cannot generate images now "
                               f"(Adobe sign-in refused its credentials: {error}); ask an administrator.")
    assert "not-the-secret" not in str(info.value)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_ims_outages_are_retried_later(fake, settings, status):
    fake.fail_next("ims", status, json_body={"error": "server_error"}, headers={"Retry-After": "3"})
    info = fails(fake, TransientSourceError, settings)
    assert info.value.retry_after == 3


def test_a_validation_error_is_reported(fake, settings):
    fake.fail_next("generate", 422, json_body={"error_code": "validation_error", "validation_errors": [
        {"loc": ["body", "size"], "msg": "Size is not supported", "type": "value_error"}]})
    assert str(fails(fake, SourceError, settings).value) == \
        "Adobe Firefly rejected the request: Size is not supported."


def test_a_prompt_out_of_bounds_is_refused_before_calling_adobe(fake, settings):
    assert "1 to 1024 characters" in str(fails(fake, SourceError, settings, prompt="x" * 1025).value)
    assert fake.calls() == {}


def test_hiccups_while_polling_are_tolerated(fake, settings):
    fake.fail_next("status", 429, json_body={"error_code": "rate_limited"}, headers={"retry-after": "0"})
    fake.fail_next("status", 503, json_body={"error_code": "model_not_loaded"})
    assert sniff_format(generate("a", settings)) == "JPEG"


def test_persistent_errors_while_polling_are_retried_later(fake, settings):
    fake.fail_next("status", 503, json_body={"error_code": "model_not_loaded"}, times=4)
    assert "not available right now (HTTP 503)" in str(fails(fake, TransientSourceError, settings).value)


def test_an_unknown_job_is_retried_later(fake, settings):
    fake.fail_next("status", 404, json_body={"error_code": "unknown_job_id", "message": "The job id is unknown."})
    assert "lost track" in str(fails(fake, TransientSourceError, settings).value)


def test_an_expired_image_url_is_retried_later(fake, settings):
    fake.expire_images()
    assert "expired before it could be downloaded" in str(fails(fake, TransientSourceError, settings).value)
    assert fake.calls("image") == 1


def test_a_truncated_image_is_retried_later(fake, settings):
    fake.truncate_next("image")
    assert "cut off" in str(fails(fake, TransientSourceError, settings).value)


def test_a_slow_answer_times_out_and_is_retried_later(fake, settings):
    fake.slow_next("generate", 1.2)
    info = fails(fake, TransientSourceError, dataclasses.replace(settings, timeout=0.4))
    assert "did not answer in time" in str(info.value)


def test_a_status_url_on_another_host_is_not_followed(fake, settings):
    fake.fail_next("generate", 202, json_body={"jobId": "urn:ff:jobs:x", "statusUrl": "https://evil.example/v3/s",
                                               "cancelUrl": "https://evil.example/v3/c"})
    assert "unexpected job address" in str(fails(fake, SourceError, settings).value)


def test_images_are_only_fetched_from_allowed_hosts(fake, settings):
    production_hosts = dataclasses.replace(settings, allowed_image_hosts=frozenset({".amazonaws.com"}))
    info = fails(fake, SourceError, production_hosts)
    assert "to a host that is not allowed (localhost)" in str(info.value)
