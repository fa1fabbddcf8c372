"""The framework's floor for bench/api.py: one Flask route returning a constant JSON, nothing else.

Served by the same gunicorn settings as the portal (`gunicorn bench.floor_app:app`, from the repository root).

Two more rows of the same run's ladder: the least any route meeting the API goal's terms can do.
`/floor/auth` adds HTTP Basic auth at its cheapest (Flask-HTTPAuth, the password compared with
FLOOR_PASSWORD in constant time: what a cached verification could at best cost, with no sign-in
throttle); `/floor/row/<id>` adds to it one primary-key SELECT of the campaign row through raw
PyMySQL on a kept autocommit connection (DATABASE_URL), returned as JSON: what
GET /api/campaigns/<id> must at least do, with no ORM, no pool, no metrics and no logging.
"""
import hmac
import os
import threading
from urllib.parse import urlsplit

import pymysql
from flask import Flask
from flask_httpauth import HTTPBasicAuth

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
    expected = os.environ.get("FLOOR_PASSWORD", "")
    return username if expected and hmac.compare_digest(password.encode(), expected.encode()) else None


@app.get("/floor/auth")
@auth.login_required
def floor_auth():
    return {"status": "ok", "items": [1, 2, 3]}


@app.get("/floor/row/<campaign_id>")
@auth.login_required
def floor_row(campaign_id: str):
    with _db().cursor(pymysql.cursors.DictCursor) as cur:
        cur.execute("SELECT * FROM campaigns WHERE id = %s", (campaign_id,))
        row = cur.fetchone()
    if row is None:
        return {"error": "not found"}, 404
    return {key: value if isinstance(value, int | float | str | None) else str(value) for key, value in row.items()}


def _db() -> pymysql.Connection:
    if not hasattr(_connection, "db"):  # one per gunicorn thread, kept: the portal's pool does as much
        url = urlsplit(os.environ["DATABASE_URL"].replace("mysql+pymysql://", "mysql://"))
        _connection.db = pymysql.connect(host=url.hostname, port=url.port or 3306, user=url.username,
                                         password=url.password or "", database=url.path.lstrip("/"),
                                         charset="utf8mb4", autocommit=True)
    return _connection.db
