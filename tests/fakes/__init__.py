"""Faithful local HTTPS fakes of Adobe Firefly v3 (+ IMS + pre-signed S3) and Dropbox.

In-process (pytest):
    tls = make_tls(tmp_path / "tls")
    fake = DropboxFake().start(tls)          # or FireflyFake(); fake.base_url, fake.host
    fake.add_link("a.jpg"); fake.fail_next("download", 429, headers={"Retry-After": "3"})
    fake.stop()

As processes beside a real worker (integration tests):
    python -m tests.fakes.run --cert-dir DIR [--dropbox-port N] [--firefly-port M]
prints one JSON line {"dropbox": {url, host, port, ca}, "firefly": {...}} when ready and
serves until SIGTERM. Steer them from the test process with
    RemoteFake(url, ca).add_link("a.jpg")  /  .fail_next("generate", 429, headers={...})
(the same methods as in-process, over POST /__control). For the Dropbox SDK, start the
worker with DROPBOX_API_HOST=DROPBOX_API_CONTENT_HOST=localhost:<dropbox port> and
REQUESTS_CA_BUNDLE unset or pointing at DIR/ca.pem (the worker passes ca_bundle anyway).
"""
