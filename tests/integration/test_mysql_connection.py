"""The MySQL connection layer against MariaDB: one ROLLBACK per session and nothing lost by it
(portal/mysql_connection.py), closed connections replaced without a ping, GET requests on
autocommit read-only connections (portal/read_only.py)."""
from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from factories import app_settings
from it_stack import MYSQL, create_database, drop_database, mysql_url, require_services

from portal import create_app, read_only
from portal.models import User, db
from portal.mysql_connection import SkipIdleRollback


def mysql_app(folder, database: str):
    """A test app (tests/unit/factories.py settings) on a MariaDB database of its own."""
    return create_app({**app_settings(folder), "SQLALCHEMY_DATABASE_URI": mysql_url(database)})


def rollbacks_sent(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Com_rollback'")
        return int(cur.fetchone()[1])


def test_a_second_rollback_with_nothing_sent_between_is_not_sent():
    require_services(need_redis=False)
    database = create_database("portal_it_conn")
    conn = SkipIdleRollback(**MYSQL, database=database, autocommit=False)
    try:
        conn.query("CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB")
        conn.commit()
        before = rollbacks_sent(conn)
        conn.query("INSERT INTO t VALUES (1)")
        conn.rollback()
        conn.rollback()
        conn.ping(False)  # a ping opens no transaction
        conn.rollback()
        assert rollbacks_sent(conn) - before == 1
        conn.rollback()  # SHOW STATUS was a statement: this one is sent
        assert rollbacks_sent(conn) - before == 2
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchone()[0] == 0, "the insert was rolled back"
        conn.query("INSERT INTO t VALUES (2)")
        conn.commit()
        conn.rollback()  # after a commit: nothing to undo, and the row stays
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM t")
            assert cur.fetchall() == ((2,),)
    finally:
        conn.close()
        drop_database(database)


def test_a_request_session_sends_one_rollback_not_two(tmp_path):
    require_services(need_redis=False)
    database = create_database("portal_it_conn")
    app = mysql_app(tmp_path, database)

    def session_rollbacks() -> int:
        # A session's read, ended as a request ends it (portal._release_session).
        value = db.session.connection().exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1]
        db.session.remove()
        return int(value)

    try:
        with app.app_context():
            assert db.engine.pool.size() >= 1
            first = session_rollbacks()
            second = session_rollbacks()  # the pool hands back the same connection
            assert isinstance(db.session.connection().connection.dbapi_connection, SkipIdleRollback)
            db.session.remove()
            db.engine.dispose()
    finally:
        drop_database(database)
    assert second - first == 1, "the session's close and the pool's return each sent a ROLLBACK"


def test_a_connection_the_server_closed_is_seen_without_a_round_trip():
    require_services(need_redis=False)
    conn = SkipIdleRollback(**MYSQL, autocommit=False)
    killer = SkipIdleRollback(**MYSQL, autocommit=True)
    try:
        conn.query("SELECT 1")
        conn.rollback()
        assert not conn.closed_by_server(), "an idle live connection has nothing to read"
        with killer.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")
            questions = int(cur.fetchone()[1])
            assert not conn.closed_by_server()
            cur.execute("SHOW GLOBAL STATUS LIKE 'Questions'")  # counts its own SHOW, nothing else of ours
            assert int(cur.fetchone()[1]) - questions <= 2
            cur.execute(f"KILL CONNECTION {conn.thread_id()}")
        deadline = time.monotonic() + 5
        while not conn.closed_by_server():
            assert time.monotonic() < deadline, "the killed connection still looks alive"
            time.sleep(0.01)
    finally:
        conn._force_close()
        killer.close()


def test_the_pool_replaces_a_connection_closed_by_a_restart_before_any_statement(tmp_path):
    """No pool_pre_ping: the checkout sees the closed socket, the pool connects afresh, and the
    request's query neither fails nor trips the fail-fast breaker."""
    require_services(need_redis=False)
    database = create_database("portal_it_conn")
    app = mysql_app(tmp_path, database)
    killer = SkipIdleRollback(**MYSQL, autocommit=True)
    try:
        with app.app_context():
            assert len(read_only.engines()) == 2
            assert not any(engine.pool._pre_ping for engine in read_only.engines())
            with app.test_request_context("/"):
                first = db.session.connection().exec_driver_sql("SELECT CONNECTION_ID()").scalar()
                db.session.remove()
            with killer.cursor() as cur:
                cur.execute(f"KILL CONNECTION {first}")  # what a restart does to every pooled connection
            time.sleep(0.2)
            with app.test_request_context("/"):  # the breaker watches web requests only
                second = db.session.connection().exec_driver_sql("SELECT CONNECTION_ID()").scalar()
                db.session.remove()
                assert second != first, "a fresh connection replaced the killed one"
                assert app.extensions["db_breaker"].allow(), "replacing a closed connection is not an outage"
                assert app.extensions["db_breaker"].until == 0.0
            for engine in read_only.engines():
                engine.dispose()
    finally:
        killer.close()
        drop_database(database)


def test_get_requests_read_on_autocommit_read_only_connections(tmp_path):
    """portal/read_only.py: a GET's session ends without a ROLLBACK and cannot write; a POST's is
    the ordinary transactional one."""
    require_services(need_redis=False)
    database = create_database("portal_it_conn")
    app = mysql_app(tmp_path, database)

    def rollbacks(conn) -> int:
        return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_rollback'").one()[1])

    try:
        with app.app_context():
            db.create_all()
        with app.test_request_context("/api/campaigns", method="GET"):
            conn = db.session.connection()
            assert conn.connection.dbapi_connection.autocommit_mode
            # The default engine's timeouts: a stalled server must not hang a GET.
            assert conn.connection.dbapi_connection._read_timeout == 10
            assert conn.engine.pool._recycle == db.engine.pool._recycle == 1800
            before = rollbacks(conn)
            assert db.session.execute(sa.select(sa.func.count()).select_from(User)).scalar() == 0
            db.session.remove()  # what the end of a request does
            conn = db.session.connection()  # the same pooled connection again
            assert rollbacks(conn) == before, "a GET's session sent a ROLLBACK"
            with pytest.raises(sa.exc.OperationalError, match="1792"):  # READ ONLY transaction
                db.session.execute(sa.insert(User).values(username="x", password_hash="h", is_admin=False))
            db.session.remove()
        with app.test_request_context("/api/campaigns", method="POST"):
            conn = db.session.connection()
            assert not conn.connection.dbapi_connection.autocommit_mode
            db.session.execute(sa.insert(User).values(username="y", password_hash="h", is_admin=False))
            db.session.rollback()  # a transaction: undone
            db.session.execute(sa.insert(User).values(username="z", password_hash="h", is_admin=False))
            db.session.commit()
            db.session.remove()
        with app.app_context():  # the worker and the CLI: no request, the transactional engine
            assert not db.session.connection().connection.dbapi_connection.autocommit_mode
            assert db.session.execute(sa.select(User.username)).scalars().all() == ["z"]
            db.session.remove()
            for engine in read_only.engines():
                engine.dispose()
    finally:
        drop_database(database)
