"""Schema fuzzing of the JSON API: every operation in /api/openapi.json, signed in as alice.

Schemathesis reads the schema when this module is collected, so the app it fuzzes is built
here at import time (the same settings as the `app` fixture in conftest.py, in a temp folder).
Before every generated request the fixed set of campaigns below is put back, so path
parameters can hit real rows in each state (completed with files, failed, pending, someone
else's) as well as ids that do not exist.

Asserted for every response: no 5xx, the status code is documented for the operation, the
Content-Type is documented, and JSON bodies match the documented schema.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from factories import PASSWORDS, add_users, app_settings, basic, brief, jpeg_bytes
from portal import create_app
from portal.models import RATIOS, Campaign, User, Variant, db, utcnow

_TMP = Path(tempfile.mkdtemp(prefix="fuzz-api-"))
atexit.register(shutil.rmtree, _TMP, ignore_errors=True)
(_TMP / "import").mkdir()
(_TMP / "import" / "beach.jpg").write_bytes(jpeg_bytes())

app = create_app(app_settings(_TMP))



def _closing(wsgi_app):
    """Read and close each response body before handing it on.

    Schemathesis' WSGI transport reads the body but never calls close() on it, as a WSGI
    server must; send_file() bodies then leak their open file (a ResourceWarning, an error
    under our filterwarnings). Buffering here does what the server would.
    """
    def middleware(environ, start_response):
        iterable = wsgi_app(environ, start_response)
        try:
            return [b"".join(iterable)]
        finally:
            if hasattr(iterable, "close"):
                iterable.close()
    return middleware


app.wsgi_app = _closing(app.wsgi_app)

# Fixed ids, so the path-parameter strategy can be built before any row exists.
COMPLETED, FAILED, PENDING, BOBS = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
SEEDED = (COMPLETED, FAILED, PENDING, BOBS)
_JPEG = jpeg_bytes((160, 90))


def _seed() -> None:
    """(Re)create the users once and the seeded campaigns (with their files) every time."""
    store = app.extensions["storage"]
    with app.app_context():
        if db.session.execute(db.select(User.id).limit(1)).first() is None:
            add_users(db, User)
        users = {u.username: u.id for u in db.session.execute(db.select(User)).scalars()}
        for campaign_id in SEEDED:
            existing = db.session.get(Campaign, campaign_id)
            if existing is not None:
                db.session.delete(existing)
            store.delete(campaign_id)
        db.session.commit()
        now = utcnow()
        for campaign_id, owner, status in ((COMPLETED, "alice", "completed"), (FAILED, "alice", "failed"),
                                           (PENDING, "alice", "pending"), (BOBS, "bob", "completed")):
            campaign = Campaign(
                id=campaign_id, owner_id=users[owner], name=f"Seeded {status}", description="Beach day",
                target_market="Everyone", campaign_message="Hello", products_description="Towels",
                source_type="local", source_path="beach.jpg", status=status,
                source_width=800 if status != "pending" else None,
                source_height=600 if status != "pending" else None,
                error_message="boom" if status == "failed" else None,
                created_at=now - timedelta(minutes=1), started_at=now if status != "pending" else None,
                finished_at=now if status in ("completed", "failed") else None)
            if status == "completed":
                for position, ratio in enumerate(RATIOS):
                    campaign.variants.append(Variant(
                        ratio=ratio, position=position, width=160, height=90, bytes=len(_JPEG),
                        crop_x=0, crop_y=0, crop_w=800, crop_h=450, crop_reason="auto"))
                    store.write(store.variant_path(campaign_id, ratio), _JPEG)
                    store.write(store.variant_path(campaign_id, ratio, preview=True), _JPEG)
                store.write(store.source_preview_path(campaign_id), _JPEG)
            db.session.add(campaign)
        db.session.commit()
        db.session.remove()


with app.app_context():
    db.create_all()
_seed()

# The schema itself needs a signed-in user too.
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app, headers=basic("alice"))
schema.config.update(basic_auth=("alice", PASSWORDS["alice"]))


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    """Half of the time, aim at a seeded campaign instead of a random (missing) id."""
    if not path_parameters or "campaign_id" not in path_parameters:
        return st.just(path_parameters)
    return st.one_of(st.just(path_parameters),
                     st.sampled_from(SEEDED).map(lambda cid: {**path_parameters, "campaign_id": cid}))


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
def test_api_conforms_to_its_schema(case):
    _seed()
    case.call_and_validate(checks=CHECKS)


# Inputs the fuzzer found (or that sit next to what it found), pinned so they fail every run
# rather than only when Hypothesis happens to draw them. Each must be a 4xx, never a crash.
@pytest.mark.parametrize("query", [
    "page=92233720368547760&per_page=100",  # found by the fuzzer: OFFSET overflows SQLite's int64
    "page=99999999999999999999",            # the same overflow with the default per_page
    "page=%C2%B2",                          # "²".isdigit() is True but int("²") raises
    "per_page=%C2%B2",
])
def test_list_query_never_crashes(query):
    _seed()
    response = app.test_client().get(f"/api/campaigns?{query}", headers=basic("alice"))
    assert response.status_code == 422, response.get_data(as_text=True)


@pytest.mark.parametrize("description", ["\x1c", "\x1d\x1e\x1f"])
def test_blank_looking_description_is_refused_not_a_crash(description):
    """Pydantic strips Unicode White_Space; str.strip() also strips \\x1c-\\x1f, leaving no line."""
    _seed()
    response = app.test_client().post("/api/campaigns", json=brief(description=description),
                                      headers=basic("alice"))
    assert response.status_code in (202, 422), response.get_data(as_text=True)
