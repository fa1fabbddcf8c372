"""Signed-in accounts are cached per app and process for AUTH_CACHE_SECONDS: a polling page does
not read the users table on every request, and changes made here take effect at once."""
from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa
from werkzeug.security import generate_password_hash

import portal.auth
from portal import create_app
from portal.models import User, db

from factories import PASSWORDS, app_settings, basic, build_app


@pytest.fixture
def app(tmp_path):
    app = build_app(tmp_path, AUTH_CACHE_SECONDS=5)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def user_queries(app):
    """The SELECTs on the users table this app runs."""
    seen = []
    with app.app_context():
        engine = db.engine

    def count(_conn, _cursor, statement, *_args):
        if "FROM users" in statement:
            seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    yield seen
    sa.event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def clock(monkeypatch):
    """portal.auth's monotonic clock, moved by hand."""
    now = [1000.0]
    monkeypatch.setattr(portal.auth.time, "monotonic", lambda: now[0])
    return now


def creds(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def set_hash_elsewhere(app, username: str, password: str) -> None:
    """Change a password the way another process would: straight in the database."""
    with app.app_context():
        db.session.execute(sa.update(User).where(User.username == username)
                           .values(password_hash=generate_password_hash(password, "pbkdf2:sha256:1000")))
        db.session.commit()


def test_repeated_requests_read_the_user_once(app, user_queries):
    client = app.test_client()
    for _ in range(5):
        r = client.get("/api/me", headers=basic("alice"))
        assert r.status_code == 200 and r.get_json()["username"] == "alice"
    assert len(user_queries) == 1


def test_the_account_is_the_right_user_and_role(app):
    client = app.test_client()
    for name in ("alice", "root", "alice", "bob", "root"):
        me = client.get("/api/me", headers=basic(name)).get_json()
        assert me == {"username": name, "is_admin": name == "root"}


def test_a_wrong_password_is_checked_against_the_database_and_refused(app, user_queries):
    client = app.test_client()
    assert client.get("/api/me", headers=basic("alice")).status_code == 200
    assert client.get("/api/me", headers=creds("alice", "not-it")).status_code == 401
    assert len(user_queries) == 2  # the cached account does not answer for another password


def test_a_new_password_set_elsewhere_works_at_once(app):
    client = app.test_client()
    assert client.get("/api/me", headers=basic("alice")).status_code == 200
    set_hash_elsewhere(app, "alice", "new-alice-pw")
    assert client.get("/api/me", headers=creds("alice", "new-alice-pw")).status_code == 200
    assert client.get("/api/me", headers=basic("alice")).status_code == 401  # the new row replaced the cached one


def test_an_old_password_changed_elsewhere_expires_with_the_cache(app, clock):
    client = app.test_client()
    assert client.get("/api/me", headers=basic("alice")).status_code == 200
    set_hash_elsewhere(app, "alice", "new-alice-pw")
    clock[0] += 4.9
    # The documented price: another process's change is seen within AUTH_CACHE_SECONDS.
    assert client.get("/api/me", headers=basic("alice")).status_code == 200
    clock[0] += 0.2
    assert client.get("/api/me", headers=basic("alice")).status_code == 401


def test_cli_changes_in_this_process_take_effect_at_once(app):
    client = app.test_client()
    assert client.get("/api/me", headers=basic("alice")).status_code == 200
    assert client.get("/api/me", headers=basic("bob")).status_code == 200
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "passwd", "alice", "--password", "n3w-pw"]).exit_code == 0
    assert runner.invoke(args=["users", "delete", "bob", "--yes"]).exit_code == 0
    assert client.get("/api/me", headers=basic("alice")).status_code == 401
    assert client.get("/api/me", headers=creds("alice", "n3w-pw")).status_code == 200
    assert client.get("/api/me", headers=basic("bob")).status_code == 401


def test_zero_seconds_reads_the_user_every_time(tmp_path):
    app = build_app(tmp_path, AUTH_CACHE_SECONDS=0)
    seen = []
    with app.app_context():
        sa.event.listen(db.engine, "before_cursor_execute",
                        lambda _c, _cu, statement, *_a: seen.append(statement) if "FROM users" in statement else None)
    client = app.test_client()
    for _ in range(3):
        assert client.get("/api/me", headers=basic("alice")).status_code == 200
    assert len(seen) == 3
    with app.app_context():
        db.engine.dispose()


def test_apps_do_not_share_accounts(tmp_path):
    """Two apps in one process (tests, or two portals) with a same-named user of another id."""
    first = build_app(tmp_path / "a", AUTH_CACHE_SECONDS=5)
    (tmp_path / "b" / "import").mkdir(parents=True)
    second = create_app({**app_settings(tmp_path / "b"), "AUTH_CACHE_SECONDS": 5})
    with second.app_context():
        db.create_all()
        db.session.add(User(username="filler", password_hash="x"))
        db.session.add(User(username="alice", password_hash=generate_password_hash(PASSWORDS["alice"]),
                            is_admin=True))
        db.session.commit()
    assert first.test_client().get("/api/me", headers=basic("alice")).get_json()["is_admin"] is False
    assert second.test_client().get("/api/me", headers=basic("alice")).get_json()["is_admin"] is True
    for app in (first, second):
        with app.app_context():
            db.engine.dispose()
