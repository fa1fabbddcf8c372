"""The framework's floor for bench/api.py: a Flask route returning a constant JSON, nothing else.

Served by the same gunicorn settings as the portal (`gunicorn bench.floor_app:app`, from the repository root).

Two more rungs of the same run's ladder, for the least any route meeting the API goal's terms
can cost. `/floor/auth` adds HTTP Basic auth at its cheapest (Flask-HTTPAuth, the name and
password compared with FLOOR_USER / FLOOR_PASSWORD in constant time: what a cached verification
could at best cost, with no sign-in throttle); `/floor/row/<id>` adds to it one primary-key
SELECT of the campaign row through raw PyMySQL on a kept autocommit connection (DATABASE_URL),
returned as JSON: what GET /api/campaigns/<id> must at least do, with no ORM, no pool, no
metrics and no request log of its own (gunicorn's access log is written for every app alike).
"""
import hmac
import os
import threading

import pymysql
from flask import Flask
from flask_httpauth import HTTPBasicAuth
from sqlalchemy.engine import make_url

app = Flask(__name__)
auth = HTTPBasicAuth()
_connection = threading.local()


@app.get("/floor")
def floor():
    return {"status": "ok", "items": [1, 2, 3]}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@auth.verify_password
def verify(username: str, password: str) -> str | None:
    user, secret = os.environ.get("FLOOR_USER", ""), os.environ.get("FLOOR_PASSWORD", "")
    # Both compared, in constant time, whatever the first gives: as a real check must.
    same_user = hmac.compare_digest(username.encode(), user.encode())
    same_password = hmac.compare_digest(password.encode(), secret.encode())
    return username if user and secret and same_user and same_password else None


@app.get("/floor/auth")
@auth.login_required
def floor_auth():
    return {"status": "ok", "items": [1, 2, 3]}


@app.get("/floor/row/<campaign_id>")
@auth.login_required
def floor_row(campaign_id: str):
    try:
        with _db().cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT * FROM campaigns WHERE id = %s", (campaign_id,))
            row = cur.fetchone()
    except pymysql.Error:
        _connection.__dict__.pop("db", None)  # the next request on this thread connects afresh
        raise
    if row is None:
        return {"error": "not found"}, 404
    return {key: value if isinstance(value, int | float | str | None) else str(value) for key, value in row.items()}


def _db() -> pymysql.Connection:
    if not hasattr(_connection, "db"):  # one per gunicorn thread, kept: the portal's pool does as much
        url = make_url(os.environ["DATABASE_URL"])
        _connection.db = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username,
                                         password=url.password or "", database=url.database,
                                         charset="utf8mb4", autocommit=True)
    return _connection.db
