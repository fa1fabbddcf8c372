"""The one-command embedded mode: `python -m portal.serve`."""
from __future__ import annotations

import pytest
from it_stack import SIGN_IN, Stack

pytestmark = pytest.mark.timeout(240)


def test_admin_password_is_generated_and_printed_once(embedded_stack: Stack):
    first = SIGN_IN.search(embedded_stack.notes["first_stdout"])
    second = SIGN_IN.search(embedded_stack.notes["second_stdout"])
    assert first and first.group(1), "the first start must print a generated admin password"
    assert second is not None, "the second start printed no sign-in line at all"
    assert second.group(1) is None, "a second start on the same instance printed a password again"
    assert first.group(1) not in embedded_stack.notes["second_stdout"]
    # The first run stopped cleanly on SIGTERM.
    assert embedded_stack.notes["first_returncode"] == 0


def test_printed_password_signs_in_as_admin_after_restart(embedded_stack: Stack):
    r = embedded_stack.api("admin").get("/api/me")
    assert r.status_code == 200, r.text
    assert r.json() == {"username": "admin", "is_admin": True}
    wrong = embedded_stack.api(None).get("/api/me", auth=("admin", "not-the-password"))
    assert wrong.status_code == 401


def test_embedded_keeps_its_state_in_the_instance_folder(embedded_stack: Stack):
    instance = embedded_stack.notes["instance"]
    assert (instance / "portal.db").is_file()
    key = instance / "secret_key"
    assert key.is_file() and len(key.read_text().strip()) >= 32
    assert key.stat().st_mode & 0o077 == 0, "the secret key must be readable by its owner only"
    ready = embedded_stack.api(None).get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
