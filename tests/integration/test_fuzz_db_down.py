"""Schema fuzzing of the whole JSON API while MariaDB is down: only 503 with Retry-After.

The operations and the generated cases are those of tests/unit/test_fuzz_api.py (its schema,
its hooks and checks are imported, not copied); each case is sent to a second, in-process app
whose database is a private MariaDB (tests/integration/it_private.py) that this module stops
(SIGTERM, connections refused) and then stalls (SIGSTOP, connections hang). Never the
machine's shared server.

Asserted for every response: status 503 (401 only for a case sent without valid credentials,
and 200 + Allow for OPTIONS, which never needs a login or the database), a Retry-After of whole
seconds, and the documented Content-Type, headers and Error body (the 503 is in the OpenAPI
document for every operation).
"""
from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from factories import add_users, app_settings, basic
from it_private import PrivateMariaDB, require_binaries
from portal import create_app
from portal.models import User, db
from test_fuzz_api import _closing, schema

pytestmark = pytest.mark.timeout(900)
SEEN: dict[str, dict[int, int]] = {"stopped": {}, "stalled": {}}


@schemathesis.check
def only_503_with_retry_after(ctx, response, case) -> bool | None:
    sent = response.request.headers.get("Authorization") or ""
    if response.status_code == 401 and sent != basic("alice")["Authorization"]:
        return True  # a case sent without (or with mangled) credentials: refused before any lookup
    if case.method.upper() == "OPTIONS" and response.status_code == 200:
        assert response.headers.get("Allow") or response.headers.get("allow")
        return True  # answered by Flask from the URL map alone, like for an anonymous client
    assert response.status_code == 503, (
        f"{case.method} {case.formatted_path}: {response.status_code} while the database is down")
    retry_after = response.headers.get("Retry-After") or response.headers.get("retry-after")
    value = retry_after[0] if isinstance(retry_after, list) else retry_after
    assert value and value.isdigit() and int(value) > 0, f"Retry-After is {retry_after!r}"
    return True


CHECKS = [only_503_with_retry_after, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    require_binaries("mariadbd", "mariadb-install-db")
    server = PrivateMariaDB(tmp_path_factory.mktemp("fuzz_db_down") / "mariadb")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def down_app(mariadb, tmp_path_factory):
    """The portal on the private MariaDB: tables and users made, one request answered, then used
    by the tests below only after they stopped or stalled the server."""
    folder = tmp_path_factory.mktemp("fuzz_db_down_app")
    (folder / "import").mkdir()
    # AUTH_CACHE_SECONDS=0: every request signs in against the database, as one arriving more
    # than a few seconds into an outage does; a cached sign-in lets validation answer 422 first
    # (test_deps_down_e2e covers what such requests get).
    app = create_app(app_settings(folder) | {"SQLALCHEMY_DATABASE_URI": mariadb.url(
        mariadb.create_database("portal_fuzz")), "AUTH_CACHE_SECONDS": 0})
    with app.app_context():
        db.create_all()
        add_users(db, User)
        db.session.remove()
    assert app.test_client().get("/api/me", headers=basic("alice")).status_code == 200
    app.wsgi_app = _closing(app.wsgi_app)
    yield app
    with app.app_context():
        db.engine.dispose()


def _record(state: str, status: int) -> None:
    SEEN[state][status] = SEEN[state].get(status, 0) + 1


@pytest.fixture(autouse=True)
def _database_state(request, mariadb):
    """stopped: SIGTERM, connections refused; stalled: SIGSTOP, every connection hangs."""
    if "stopped" in request.node.name:
        mariadb.stop()  # a no-op once stopped; resumes a paused server first
    elif "stalled" in request.node.name:
        if not mariadb.running:
            mariadb.start()
        mariadb.pause()


_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@settings(max_examples=25, **_SETTINGS)
def test_api_answers_503_while_mariadb_is_stopped(case, down_app):
    _record("stopped", case.call_and_validate(app=down_app, checks=CHECKS).status_code)


@schema.parametrize()
@settings(max_examples=6, **_SETTINGS)
def test_api_answers_503_while_mariadb_is_stalled(case, down_app):
    _record("stalled", case.call_and_validate(app=down_app, checks=CHECKS).status_code)


def test_zz_every_generated_request_got_503(mariadb, down_app):
    """The two fuzz runs sent requests and got 503s (each one checked above; this is the tally:
    401 = cases sent without valid credentials, 200 = OPTIONS)."""
    print(f"\n[fuzz-db-down] responses by status: {SEEN}")
    for state, counts in SEEN.items():
        assert set(counts) <= {503, 401, 200} and counts.get(503, 0) > 0, (state, counts)
    assert all(SEEN.values()), f"a fuzz run sent nothing: {SEEN}"
    # After the outage the same app serves again (the breaker lets a request through).
    mariadb.resume()
    deadline = time.monotonic() + 30
    while True:
        status = down_app.test_client().get("/api/me", headers=basic("alice")).status_code
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200
