"""The fakes as separate processes, steered over /__control, as the integration tests use
them beside a real worker; plus the placeholder image."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.fakes.dropbox_fake import DropboxFake
from tests.fakes.firefly_fake import CLIENT_ID, CLIENT_SECRET, FireflyFake
from tests.fakes.server import RemoteFake
from tests.fakes.tls import make_tls
from worker.imaging import sniff_format
from worker.remote import SourceError, TransientSourceError, firefly
from worker.remote.dropbox_source import NOT_FOUND, DropboxSettings, fetch_dropbox
from worker.remote.placeholder import placeholder

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fakes(tmp_path_factory):
    """`python -m tests.fakes.run` in its own process; yields its ready line."""
    cert_dir = tmp_path_factory.mktemp("fakes-tls")
    with subprocess.Popen([sys.executable, "-m", "tests.fakes.run", "--cert-dir", str(cert_dir)], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}) as proc:
        try:
            ready = json.loads(proc.stdout.readline())
            yield ready
        finally:
            proc.terminate()
            assert proc.wait(10) == 0  # SIGTERM is a clean stop
            proc.stdout.close()


def test_the_dropbox_fake_is_steered_from_another_process(fakes):
    info = fakes["dropbox"]
    remote = RemoteFake(info["url"], info["ca"])
    image = Image.new("RGB", (30, 20), "red")
    link = remote.add_link("remote.jpg", _jpeg(image))
    settings = DropboxSettings(link_hosts=frozenset({info["host"]}), ca_bundle=info["ca"], timeout=5,
                               allow_private=True)
    assert sniff_format(fetch_dropbox(link, settings)) == "JPEG"
    remote.fail_next("content", 503, body="busy", headers={"Retry-After": "5"})
    with pytest.raises(TransientSourceError) as e:
        fetch_dropbox(link, settings)
    assert e.value.retry_after == 5
    assert str(_raises(SourceError, fetch_dropbox, remote.add_link("gone.jpg", behaviour="not_found"),
                       settings)) == NOT_FOUND
    assert remote.calls("content") == 2


def test_the_firefly_fake_is_steered_from_another_process(fakes):
    info = fakes["firefly"]
    remote = RemoteFake(info["url"], info["ca"])
    settings = firefly.FireflySettings(CLIENT_ID, CLIENT_SECRET, ims_url=f"{info['url']}/ims/token/v3",
                                       api_base=info["url"], ca_bundle=info["ca"], poll_interval=0.02,
                                       allow_private=True, allowed_image_hosts=frozenset({info["host"]}))
    firefly.clear_token_cache()
    try:
        remote.configure(job_outcome="failed:prompt_unsafe")
        assert "Rephrase it and retry" in str(_raises(SourceError, firefly.generate, "a prompt", settings))
        remote.configure(job_outcome="succeeded", full_size_images=True)
        data = firefly.generate("a prompt", settings)
        assert Image.open(_bytes_io(data)).size == (2048, 2048)
    finally:
        firefly.clear_token_cache()


def test_unknown_control_calls_are_refused(fakes):
    remote = RemoteFake(fakes["firefly"]["url"], fakes["firefly"]["ca"])
    with pytest.raises(RuntimeError, match="unknown control method"):
        remote.stop()
    with pytest.raises(RuntimeError, match="cannot configure"):
        remote.configure(clients={})


def test_placeholder_is_a_labelled_jpeg_of_the_asked_size():
    data = placeholder("A sunlit kitchen with lemons " * 20, size=(1024, 768))
    assert sniff_format(data) == "JPEG"
    with Image.open(_bytes_io(data)) as image:
        assert image.size == (1024, 768)
        pixels = image.convert("L")
        # white text over the dark gradient: some pixels are near white, the corners are not
        assert pixels.getextrema()[1] > 240 and pixels.getpixel((2, 2)) < 200


def _raises(exc_type, call, *args):
    with pytest.raises(exc_type) as info:
        call(*args)
    return info.value


def _jpeg(image: Image.Image) -> bytes:
    out = _bytes_io()
    image.save(out, "JPEG")
    return out.getvalue()


def _bytes_io(data: bytes = b"") -> io.BytesIO:
    return io.BytesIO(data)


# -- the fakes refuse what the real services refuse (so a client passing them means something) --

@pytest.fixture(scope="module")
def local(tmp_path_factory):
    tls = make_tls(tmp_path_factory.mktemp("local-tls"))
    dbx, ff = DropboxFake().start(tls), FireflyFake().start(tls)
    with requests.Session() as http:
        http.trust_env, http.verify = False, tls.ca
        yield dbx, ff, http
    dbx.stop()
    ff.stop()


def test_dropbox_fake_checks_download_requests_like_dropbox(local):
    dbx, _, http = local
    token = dbx.issue_token()
    url = f"{dbx.base_url}/2/files/download"
    bearer = {"Authorization": f"Bearer {token}"}
    dbx.add_file("/a.jpg")
    ok = http.post(url, headers={**bearer, "Dropbox-API-Arg": '{"path":"/A.JPG"}'})  # any JSON spelling, any case
    assert ok.status_code == 200 and json.loads(ok.headers["Dropbox-API-Result"])["path_display"] == "/a.jpg"
    refusals = [
        ({**bearer, "Dropbox-API-Arg": '{"path": "/a.jpg"}', "Content-Type": "application/json"}, 400),
        ({**bearer, "Dropbox-API-Arg": "{'path': '/a.jpg'}"}, 400),  # not JSON
        ({**bearer, "Dropbox-API-Arg": '{"path": "/a.jpg", "extra": 1}'}, 400),
        ({**bearer}, 400),  # no argument
        ({"Authorization": "Basic " + base64.b64encode(b"fake-app-key:fake-app-secret").decode(),
          "Dropbox-API-Arg": '{"path": "/a.jpg"}'}, 400),  # app auth on a user route
        ({"Authorization": "Bearer sl.unknown", "Dropbox-API-Arg": '{"path": "/a.jpg"}'}, 401),
    ]
    for headers, status in refusals:
        r = http.post(url, headers=headers)
        assert r.status_code == status, (headers, r.text)
        if status == 401:
            assert r.headers["Content-Type"] == "application/json"
            assert r.json()["error"] == {".tag": "invalid_access_token"}
        else:
            assert r.headers["Content-Type"].startswith("text/plain")
    non_ascii = http.post(url, headers={**bearer, "Dropbox-API-Arg": '{"path": "/é.jpg"}'.encode()})
    assert non_ascii.status_code == 400
    missing = http.post(url, headers={**bearer, "Dropbox-API-Arg": '{"path": "/none.jpg"}'})
    assert missing.status_code == 409 and missing.headers["Content-Type"] == "application/json"
    assert missing.json() == {"error_summary": "path/not_found/..", "error": {".tag": "path",
                                                                             "path": {".tag": "not_found"}}}


def test_dropbox_fake_checks_token_requests(local):
    dbx, _, http = local
    url = f"{dbx.base_url}/oauth2/token"
    form = {"grant_type": "refresh_token", "refresh_token": "fake-refresh-token", "client_id": "fake-app-key",
            "client_secret": "fake-app-secret"}
    ok = http.post(url, data=form)
    assert ok.status_code == 200 and ok.json()["access_token"].startswith("sl.") and ok.json()["expires_in"] == 14400
    assert http.post(url, data={**form, "refresh_token": "nope"}).json()["error"] == "invalid_grant"
    assert http.post(url, data={**form, "client_secret": "nope"}).json()["error"] == "invalid_client"
    assert http.post(url, json=form).status_code == 400


def test_firefly_fake_checks_requests_like_firefly(local):
    _, ff, http = local
    token = http.post(f"{ff.base_url}/ims/token/v3", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "scope": "openid,AdobeID,firefly_api,ff_apis"}).json()["access_token"]
    headers = {"x-api-key": CLIENT_ID, "Authorization": f"Bearer {token}"}
    url = f"{ff.base_url}/v3/images/generate-async"
    assert http.post(url, json={"prompt": "a"}, headers=headers).status_code == 202
    assert http.post(url, data="prompt=a", headers={**headers, "Content-Type": "text/plain"}).status_code == 415
    assert http.post(url, data=b"", headers={**headers, "Content-Type": "application/json"}).json()[
        "error_code"] == "empty_input_body"
    assert http.post(url, json={"prompt": "a"}, headers={**headers, "x-api-key": "other"}).json()[
        "error_code"] == "403003"
    assert http.post(url, json={"prompt": "a"}, headers={**headers, "Authorization": "Bearer x"}).status_code == 401
    for body, field in [({"prompt": "a" * 1025}, "prompt"), ({"prompt": "a", "size": {"width": 1080, "height": 1920}},
                                                             "size"),
                        ({"prompt": "a", "numVariations": 2, "seeds": [1]}, "seeds"),
                        ({"prompt": "a", "contentClass": "video"}, "contentClass")]:
        r = http.post(url, json=body, headers=headers)
        assert r.status_code == 422 and r.json()["validation_errors"][0]["loc"] == ["body", field]
    legacy = http.post(f"{ff.base_url}/v3/images/generate", json={"prompt": "a", "seeds": [3, 4]}, headers=headers)
    assert legacy.status_code == 200 and [o["seed"] for o in legacy.json()["outputs"]] == [3, 4]
    image_url = legacy.json()["outputs"][0]["image"]["url"]
    assert http.get(image_url, headers={"Authorization": f"Bearer {token}"}).status_code == 400
    assert http.get(image_url.replace("X-Amz-Signature=", "X-Amz-Signature=0")).status_code == 403
    assert http.get(image_url).headers["Content-Type"] == "image/jpeg"
